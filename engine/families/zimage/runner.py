"""The Z-Image runner: text to image, img2img and inpaint (ZImagePipeline and its img2img / inpaint
siblings sharing one set of modules), run by the shared ``PipelineRunner`` with every core guarantee.
Qwen3 reads plain text: A1111 weights are stripped with a notice (``engine.core.prompt_policy``);
``<lora:…>`` LoRAs apply through the core (``engine.core.loras``). Turbo runs without CFG whatever the request says, and records that.
Every method runs on the engine thread.
"""

from __future__ import annotations

import time

from engine.api import Mode, ModelInfo
from engine.core.job import Job
from engine.core.loading import assembled, pretrained
from engine.devices import bf16_for_fp16
from engine.families.base import Capabilities, LoadContext
from engine.families.pipeline_runner import PipelineRunner
from engine.families.zimage.rules import TURBO_NEGATIVE


class ZImageRunner(PipelineRunner):
    """One loaded Z-Image model (Turbo or Base)."""

    classes = {Mode.TXT2IMG: "ZImagePipeline", Mode.IMG2IMG: "ZImageImg2ImgPipeline",
               Mode.INPAINT: "ZImageInpaintPipeline"}

    def prepare(self, job: Job):
        request = job.request
        if "guidance_scale" not in self.caps.parameters:  # Turbo: no CFG, and the metadata says so
            if request.negative_prompt.strip():
                job.notice(TURBO_NEGATIVE + "; it was left out.")
            request = request.replace(guidance_scale=0.0, negative_prompt="")
        return request

    def encode(self, pipe, text, request) -> dict:
        """The Qwen3 prompt embeddings (and the negative's, with CFG), once for the batch: the runner's
        prompt cache keeps them while the text is unchanged (live painting)."""
        cfg = request.guidance_scale > 0  # the pipeline's own test for CFG
        embeds, negative = pipe.encode_prompt(prompt=text.prompt, device=self.placement.settings.device,
                                              do_classifier_free_guidance=cfg, negative_prompt=text.negative or None)
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative if cfg else None}


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> ZImageRunner:
    """Load a Z-Image diffusers folder or split-layout transformer file (safetensors or GGUF; offline).
    Runs on the engine thread."""
    import dataclasses

    import diffusers

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))  # fp16 overflows
    started = time.perf_counter()
    if info.format == "diffusers":
        pipe = pretrained(diffusers.ZImagePipeline, info.path, info.name, "this Z-Image model", dtype=ctx.dtype)
    else:  # a transformer file of ComfyUI's split layout (.safetensors or GGUF), its parts found beside it
        from engine.families.zimage.split import load_split

        pipe = assembled(lambda: load_split(info, ctx.dtype), info.name, "this Z-Image model")
    return ZImageRunner(info, pipe, caps, ctx, time.perf_counter() - started)
