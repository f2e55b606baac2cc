"""Find and load weights: diffusers folders and single-file ``.safetensors`` checkpoints, offline.

What a file is gets decided from its bytes and header by ``engine.files.probe`` (never unpickling);
a single file is loaded through diffusers' ``from_single_file`` with a config folder written from the
bundled real configs, resized to the checkpoint's tensor shapes (``engine.architectures``), so no
config is ever fetched from the network.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from engine.api import Mode, ModelError, ModelInfo
from engine.core.loading import LOAD_ERRORS, check_filled, load_failed, quiet_libraries
from engine.files.probe import check_model, read_header
from engine.tokenizers import folder_tokenizers, single_file_tokenizers

log = logging.getLogger(__name__)


quiet_libraries()


def _pipeline_classes(family: str):
    import diffusers as d

    if family == "sdxl":
        return d.StableDiffusionXLPipeline, d.StableDiffusionXLImg2ImgPipeline, d.StableDiffusionXLInpaintPipeline
    return d.StableDiffusionPipeline, d.StableDiffusionImg2ImgPipeline, d.StableDiffusionInpaintPipeline


def base_pipeline_class(info: ModelInfo):
    """The pipeline class a model loads as: its txt2img pipeline, or the inpaint one for inpainting models."""
    txt2img, _img2img, inpaint = _pipeline_classes(info.family)
    return inpaint if info.inpainting else txt2img


def pipeline_class_for(info: ModelInfo, mode: Mode):
    """Which pipeline runs ``mode`` on this model. Inpainting models run every mode through their
    inpaint pipeline (txt2img = a blank image under a full mask), as A1111 does."""
    txt2img, img2img, inpaint = _pipeline_classes(info.family)
    if info.inpainting or mode is Mode.INPAINT:
        return inpaint
    return img2img if mode is Mode.IMG2IMG else txt2img


def load_pipeline(path: str | Path, dtype, info: ModelInfo | None = None) -> tuple[ModelInfo, object, float]:
    """Load the model at ``path`` on the CPU in ``dtype``; returns (info, pipeline, seconds).

    ``info``: what ``check_model`` already said about ``path`` (skips reading the headers again).
    Raises ModelError (and subclasses) with one plain line naming the file. Runs on the engine thread.
    """
    info = info or check_model(str(path))
    cls = base_pipeline_class(info)
    what = f"this {info.family.upper()} model"
    started = time.perf_counter()
    try:
        if info.format == "diffusers":
            from engine.files.configcheck import check_folder_proportions

            check_folder_proportions(info.path)  # before anything is allocated (engine.files.configcheck)
            pipe = _load_folder(cls, info, dtype)
        else:
            pipe = _load_single_file(cls, info, dtype)
    except ModelError:
        raise
    except LOAD_ERRORS as exc:
        raise load_failed(info.name, what, exc, info.path if info.format == "diffusers" else None) from exc
    check_filled(pipe, info.name, what, info.path if info.format == "diffusers" else None)
    pipe.set_progress_bar_config(disable=True)
    if info.variant == "turbo":
        from engine.samplers import ONE_STEP_KEY

        # One-step models start at the last training timestep (as their own scheduler configs say).
        pipe.scheduler.register_to_config(timestep_spacing="trailing", **{ONE_STEP_KEY: True})
    return info, pipe, time.perf_counter() - started


def _load_folder(cls, info: ModelInfo, dtype):
    kwargs = {}
    if info.family != "sdxl":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    kwargs.update(folder_tokenizers(info.path, info.family))  # the shared bundled ones, when identical
    # use_safetensors=True: a folder that only has pickled .bin weights is refused, not unpickled.
    return cls.from_pretrained(info.path, dtype=dtype, local_files_only=True, use_safetensors=True, **kwargs)


def _load_single_file(cls, info: ModelInfo, dtype):
    from engine.architectures import single_file_config_dir

    header = read_header(info.path)
    if not any(name.startswith("first_stage_model.") for name in header.tensors):
        raise ModelError(info.name, "this checkpoint has no built-in VAE (it was saved without one); "
                         "use a checkpoint that includes its VAE")
    with tempfile.TemporaryDirectory(prefix="easel-config-") as tmp:
        config_dir = single_file_config_dir(
            info.family, info.inpainting, info.prediction_type, header.shapes(), Path(tmp)
        )
        kwargs = single_file_tokenizers(info.family)  # built once per process (engine.tokenizers)
        if info.family != "sdxl":
            kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        return cls.from_single_file(
            info.path, config=str(config_dir), local_files_only=True, dtype=dtype, **kwargs
        )


def derived_pipeline(base, info: ModelInfo, mode: Mode):
    """A pipeline for ``mode`` sharing ``base``'s modules (no copy, no reload)."""
    cls = pipeline_class_for(info, mode)
    if isinstance(base, cls) and type(base) is cls:
        return base
    pipe = cls.from_pipe(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe
