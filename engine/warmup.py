"""Import, ahead of time, the modules a first load and generation would import lazily.

diffusers and transformers import pipeline, scheduler and model modules on first use (about 1,500
modules). Module initialisation holds the GIL, so doing it during the first generation stalls
the GUI thread; the app calls this on its engine thread at start-up instead, while the window
says the engine is loading.
"""

from __future__ import annotations

from engine.samplers import scheduler_class_names


def warm_imports() -> None:
    """Import the pipelines, schedulers, single-file loader and CLIP classes. Runs on the engine thread."""
    import diffusers
    import diffusers.loaders.single_file  # noqa: F401
    import diffusers.guiders  # noqa: F401
    import diffusers.loaders.single_file_utils  # noqa: F401
    import torchsde  # noqa: F401  (the SDE sampler's Brownian tree)
    import transformers

    import engine.architectures  # noqa: F401  (single-file config folders)
    # Prompt weighting (compel imports every pipeline it wraps), LoRAs (peft), the add-on and memory code.
    import compel.diffusers_textual_inversion_manager  # noqa: F401
    import compel.embeddings_provider  # noqa: F401
    import peft  # noqa: F401
    import diffusers.loaders.lora_pipeline  # noqa: F401
    import importlib

    import engine.core.decode  # noqa: F401  (the shared core every runner uses)
    import engine.core.placement  # noqa: F401
    import engine.core.upscalers  # noqa: F401  (the hires fix and detail upscale's enlarging step)
    import engine.core.previews  # noqa: F401
    import engine.core.prompt_policy  # noqa: F401
    import engine.core.steps  # noqa: F401
    import engine.core.tiles  # noqa: F401
    from engine import families

    for family in families.families():  # every family's runner (they import diffusers lazily, on load)
        importlib.import_module(f"{type(family).__module__}.runner")
    import engine.families.sd.addons  # noqa: F401
    import engine.memory  # noqa: F401
    import engine.models  # noqa: F401
    import engine.prompts  # noqa: F401
    for name in (
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
        "AutoPipelineForImage2Image",
        "AutoPipelineForInpainting",
        "AutoencoderKL",
        "UNet2DConditionModel",
        *scheduler_class_names(),
        # Schedulers diffusers imports as "compatibles" when one scheduler is made from another.
        "DEISMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "EDMEulerScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "KDPM2DiscreteScheduler",
    ):
        getattr(diffusers, name)
    for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer", "CLIPTokenizerFast"):
        getattr(transformers, name)
    # Building a CLIP tokenizer holds the GIL for 60-80 ms: build the bundled ones now, not mid-load.
    from engine.tokenizers import warm

    warm()
