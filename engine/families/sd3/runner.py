"""The SD 3.5 runner: StableDiffusion3Pipeline and its img2img / inpaint siblings sharing one set of
modules (no copy, no reload), from a diffusers folder or an all-in-one single file.

The core's guarantees: a Progress event per step and a cancel within a step (``engine.core.steps``),
the presets and out-of-memory ladder (``Placement``), a live preview from the 16-channel latents
(``engine.core.previews``, space "sd3"), the decode NaN guard (``engine.core.decode``) and the prompt
policy: CLIP and T5 take plain text, so A1111 weights are stripped with a notice; ``<lora:…>`` LoRAs
apply through the core (``engine.core.loras``), original-names ones renamed (``sd3.loras``). Without its T5
encoder (a folder that has none) the model runs on the two CLIP encoders, said in one notice.
Every method runs on the engine thread.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from engine.api import Mode, ModelInfo
from engine.core.job import Job
from engine.families.base import Capabilities, LoadContext
from engine.families.pipeline_runner import PipelineRunner
from engine.devices import bf16_for_fp16

NO_T5 = ("This SD 3.5 model has no T5 text encoder: prompts are read by its two CLIP encoders only "
         "(77 tokens; long or detailed prompts are followed less closely).")
TURBO_CFG = "SD 3.5 Large Turbo runs without CFG: the CFG scale and negative prompt were left out."


class SD3Runner(PipelineRunner):
    """One loaded SD 3.5 model."""

    classes = {Mode.TXT2IMG: "StableDiffusion3Pipeline", Mode.IMG2IMG: "StableDiffusion3Img2ImgPipeline",
               Mode.INPAINT: "StableDiffusion3InpaintPipeline"}

    def __init__(self, info: ModelInfo, base, caps: Capabilities, ctx: LoadContext, load_seconds: float,
                 notices: tuple[str, ...] = ()):
        super().__init__(info, base, caps, ctx, load_seconds)
        self.load_notices = notices

    def prepare(self, job: Job):
        request = job.request
        if "guidance_scale" not in self.caps.parameters and (request.guidance_scale or request.negative_prompt):
            request = request.replace(guidance_scale=0.0, negative_prompt="")
            job.notice(TURBO_CFG)
        for notice in self.load_notices:
            job.notice(notice)
        if self.base.text_encoder_3 is None:
            job.notice(NO_T5)
        return request

    def encode(self, pipe, text, request) -> dict:
        """The CLIP-L + CLIP-G (+ T5) embeddings and pooled vectors (the negative's too, with CFG), once
        for the batch: the runner's prompt cache keeps them while the text is unchanged (live painting)."""
        cfg = request.guidance_scale > 1  # the pipeline's own test for CFG
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=text.prompt, prompt_2=None, prompt_3=None, device=self.placement.settings.device,
            do_classifier_free_guidance=cfg, negative_prompt=text.negative or None)
        args = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if cfg:
            args.update(negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled)
        return args

    def lora_source(self, path: str):
        """kohya / ComfyUI LoRAs in the original MMDiT names, renamed for diffusers (``sd3.loras``)."""
        from engine.families.sd3 import loras

        return loras.source(path, self.base.transformer.config.num_layers)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> SD3Runner:
    """Load an SD 3.5 diffusers folder or all-in-one file (safetensors only, offline). Engine thread."""
    import diffusers

    from engine.core.loading import pretrained

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))
    started = time.perf_counter()
    notices: tuple[str, ...] = ()
    if info.format == "diffusers":
        from engine.files.folders import listed, read_json

        # A folder saved without T5 lists text_encoder_3 as null: diffusers needs to be told it is absent.
        absent = {} if listed(read_json(Path(info.path), "model_index.json"), "text_encoder_3") else \
            {"text_encoder_3": None, "tokenizer_3": None}
        pipe = pretrained(diffusers.StableDiffusion3Pipeline, info.path, info.name, "this SD 3.5 model",
                          dtype=ctx.dtype, **absent)
    else:
        from engine.families.sd3 import configs
        from engine.families.sd3.singlefile import load_single_file

        if info.format == "safetensors" and configs.all_in_one(configs.file_shapes(info.path)):
            pipe, notices = load_single_file(info, ctx.dtype)
        else:  # a transformer of ComfyUI's split layout (safetensors or GGUF), its encoders found beside it
            from engine.core.loading import assembled
            from engine.families.sd3.split import load_split

            pipe, notices = assembled(lambda: load_split(info, ctx.dtype), info.name, "this SD 3.5 model")
    return SD3Runner(info, pipe, caps, ctx, time.perf_counter() - started, notices)
