"""What a file is: reading files safely and with bounds, header reading, and the probe registry
that the model families fill (one place decides what a model file or folder is)."""
