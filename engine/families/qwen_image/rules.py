"""Qwen-Image's numbers and rule lines, shared by its capabilities and its runner. Any thread."""

# Free device memory (GiB) "auto" needs for each preset, bf16: the 20B transformer is 40.9 GB and the
# Qwen2.5-VL-7B encoder 16.6 GB, so everything resident ("fast") wants about 60 GB; "low" moves one
# module onto the GPU at a time, the transformer in fp8 storage there (engine.core.precision: 20.5 GB,
# plus activations: about 24 GB); below that "minimal" streams the layers (slow). Computed from the
# weight sizes, not measured.
THRESHOLDS = (("fast", 60.0), ("balanced", 58.0), ("low", 24.0))
# For a GGUF transformer (engine.devices.thresholds_for): the bf16 transformer's GB (20.5 in fp8) and the
# largest other part in "low" (Qwen2.5-VL-7B with its vision tower, in its own precision).
TRANSFORMER_GB, LOW_OTHER_GB = 41.0, 16.6
SIZE_STEP = 16  # the VAE's 8x times the transformer's 2x2 patches
SAMPLER = "Qwen-Image uses its own flow-matching schedule"
EDIT_NEW_IMAGE = ("{label} edits an image by instruction: open an image (image to image) and say what to change; "
                  "use Qwen-Image for new images")
EDIT_STRENGTH = "{label} repaints the image from the instruction: there is no strength to set"
# scheduler/scheduler_config.json of Qwen/Qwen-Image (the Edit models' is the same).
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                 base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
