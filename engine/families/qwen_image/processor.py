"""Qwen2.5-VL's processor for the Qwen-Image-Edit pipelines, images only.

The Edit pipelines show the input image to Qwen2.5-VL through ``Qwen2VLProcessor``, whose
constructor also insists on a video processor; transformers' video processors need torchvision,
which Easel does not install (nothing here reads video). ``ImageProcessor`` is that very processor
(the same image-pad expansion, the same image processor settings) without the video part, built
from the model folder's ``processor/`` files. Engine thread (imports transformers).
"""

from __future__ import annotations

from pathlib import Path


def image_processor_class():
    from transformers import Qwen2VLProcessor

    class ImageProcessor(Qwen2VLProcessor):
        """``Qwen2VLProcessor`` with its image processor and tokenizer only."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageProcessor


def make(image_processor, tokenizer):
    """The processor over ``image_processor`` (a ``Qwen2VLImageProcessor``) and ``tokenizer``."""
    return image_processor_class()(image_processor=image_processor, tokenizer=tokenizer)


def load(folder: Path, tokenizer):
    """The processor of a Qwen-Image-Edit diffusers folder (its ``processor/preprocessor_config.json``;
    the tokenizer is the pipeline's own, as the released folders carry the same one twice)."""
    from transformers import Qwen2VLImageProcessor

    return make(Qwen2VLImageProcessor.from_pretrained(str(Path(folder) / "processor"), local_files_only=True),
                tokenizer)
