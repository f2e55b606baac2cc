"""Z-Image's numbers and rule lines, shared by its capabilities and its runner. Any thread."""

# Free device memory (GiB) "auto" needs for each preset, bf16: the transformer is 12.3 GB and the
# Qwen3-4B encoder 8 GB, so everything resident ("fast") wants about 24 GB; "low" moves one module
# onto the GPU at a time (the transformer plus activations: about 14 GB, a 16 GB card); below that,
# "minimal" streams the layers.
THRESHOLDS = (("fast", 24.0), ("balanced", 22.0), ("low", 14.0))
TURBO_STEPS = (1, 16)
TURBO_CFG = "Z-Image Turbo is distilled to run without CFG: the CFG scale stays at 0"
TURBO_NEGATIVE = "Z-Image Turbo runs without CFG, so a negative prompt has no effect"
SIZE_STEP = 16  # the VAE's 8x times the transformer's 2x2 patches
