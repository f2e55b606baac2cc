"""Image metadata: write ours (an exact JSON recipe) plus A1111 ``parameters``; read every known format.

Writing (PNG): ``png_info`` puts two text chunks in the file. ``parameters`` is the A1111 text that
other tools (A1111, Forge, SD.Next, Civitai, image browsers) understand; ``easel`` is an iTXt chunk
holding JSON with the exact request, so Easel regenerates exactly this image from it.

Reading: ``read_metadata`` never raises. It tries, in order: our ``easel`` chunk; ``parameters``
(A1111 text, or Fooocus JSON); ComfyUI ``prompt`` (the executed graph, SD or FLUX), else its
``workflow`` (the editor graph); InvokeAI
``invokeai_metadata``; InvokeAI 2.x / NMKD ``sd-metadata`` and ``Dream``; JPEG/WebP EXIF
UserComment (A1111, Fooocus) and the JPEG comment. Values are mapped onto ``GenerationRequest``
field names and checked against its limits; anything out of range or not available in Easel
(a sampler, a seed above 2**64-1, a size not a multiple of 8) is mapped to the nearest value with
a warning the UI can show. Not read: NovelAI, Easy Diffusion, XMP.

The modules, one idea each:
  fields.py      ImageMetadata, the keys we write, sampler mapping, field checking every reader ends with
  write.py       a1111_parameters, png_info, exif_with_parameters
  a1111.py       parse_a1111: A1111 / Forge / SD.Next / Civitai ``parameters`` text
  easel.py       our own ``easel`` JSON chunk
  fooocus.py     Fooocus JSON
  comfyui.py     the ComfyUI graphs (``prompt``, or the editor's ``workflow``)
  invokeai.py    InvokeAI 3.x JSON, InvokeAI 2.x ``sd-metadata`` / ``Dream``, NMKD
  containers.py  the texts of a file (PNG chunks, EXIF, JPEG comment) and read_metadata

Qt-free and torch-free: stdlib, pillow, engine.api, and engine.images for the mask chunk.
"""

from __future__ import annotations

from engine.metadata.a1111 import parse_a1111
from engine.metadata.containers import MAX_CHUNK_BYTES, MAX_TEXT_BYTES, decode_user_comment, read_metadata
from engine.metadata.fields import DEFAULT_SAMPLER, EASEL_KEY, FORMAT_VERSION, PARAMETERS_KEY, ImageMetadata, map_sampler
from engine.metadata.write import a1111_parameters, exif_with_parameters, png_info

__all__ = [
    "DEFAULT_SAMPLER",
    "EASEL_KEY",
    "FORMAT_VERSION",
    "MAX_CHUNK_BYTES",
    "MAX_TEXT_BYTES",
    "PARAMETERS_KEY",
    "ImageMetadata",
    "a1111_parameters",
    "decode_user_comment",
    "exif_with_parameters",
    "map_sampler",
    "parse_a1111",
    "png_info",
    "read_metadata",
]
