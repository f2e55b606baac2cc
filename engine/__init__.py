"""Easel's engine: Qt-free. Requests in, images out (see engine.api).

Importing the package makes the Hugging Face libraries offline before any of them is imported:
Easel never reaches the network to load or run a model.
"""

import os as _os

__version__ = "0.1.0"

for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("DIFFUSERS_NO_ADVISORY_WARNINGS", "1"),
    ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    # Import-time notices (e.g. "requires torchvision ... falling back") are not the user's concern.
    ("TRANSFORMERS_VERBOSITY", "error"),
    ("DIFFUSERS_VERBOSITY", "error"),
):
    _os.environ.setdefault(_name, _value)
