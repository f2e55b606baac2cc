"""Z-Image's numbers and rule lines, shared by its capabilities and its runner. Any thread."""

# Free device memory (GiB) "auto" needs for each preset, bf16: the transformer is 12.3 GB and the
# Qwen3-4B encoder 8 GB, so everything resident ("fast") wants about 24 GB; "low" moves one module
# onto the GPU at a time, the transformer in fp8 storage there (engine.core.precision: 6.2 GB, so the
# 8 GB encoder is the largest; plus activations about 10 GB, a 12 GB card); below that, "minimal"
# streams the layers. Computed from the weight sizes, not measured.
THRESHOLDS = (("fast", 24.0), ("balanced", 22.0), ("low", 10.0))
# For a GGUF transformer (engine.devices.thresholds_for): the bf16 transformer's GB and the largest other
# part in "low" (the Qwen3-4B encoder).
TRANSFORMER_GB, LOW_OTHER_GB = 12.3, 8.0
TURBO_STEPS = (1, 16)
TURBO_CFG = "Z-Image Turbo is distilled to run without CFG: the CFG scale stays at 0"
TURBO_NEGATIVE = "Z-Image Turbo runs without CFG, so a negative prompt has no effect"
SIZE_STEP = 16  # the VAE's 8x times the transformer's 2x2 patches
