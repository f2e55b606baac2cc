"""The Qwen-Image runner: text to image, img2img and inpaint (QwenImagePipeline and its img2img /
inpaint siblings sharing one set of modules), run by the shared ``PipelineRunner`` with every core
guarantee. CFG is Qwen-Image's "true CFG" (a second pass with the negative prompt, an empty one when
none is given). Its transformer works on 2x2-packed tokens and its VAE is a video VAE (one frame).
Qwen2.5-VL reads plain text: A1111 weights are stripped with a notice; ``<lora:…>`` LoRAs apply through
the core (``engine.core.loras``).
Every method runs on the engine thread.
"""

from __future__ import annotations

import time

from engine.api import Mode, ModelInfo
from engine.core.loading import pretrained
from engine.core.previews import latents_to_preview
from engine.devices import bf16_for_fp16
from engine.families.base import Capabilities, LoadContext
from engine.families.pipeline_runner import PipelineRunner


MAX_TOKENS = 512  # the pipelines' own default


class QwenImageRunner(PipelineRunner):
    """One loaded Qwen-Image model."""

    classes = {Mode.TXT2IMG: "QwenImagePipeline", Mode.IMG2IMG: "QwenImageImg2ImgPipeline",
               Mode.INPAINT: "QwenImageInpaintPipeline"}
    def encode(self, pipe, text, request) -> dict:
        """The Qwen2.5-VL prompt embeddings and masks (the negative's too, with true CFG), once for the
        batch: the runner's prompt cache keeps them while the text is unchanged (live painting)."""
        # True CFG runs only with a negative prompt; an empty one is " " (the model card's advice).
        cfg = request.guidance_scale > 1.0
        device = self.placement.settings.device
        embeds, mask = pipe.encode_prompt(prompt=text.prompt, device=device, max_sequence_length=MAX_TOKENS)
        args = {"prompt_embeds": embeds, "prompt_embeds_mask": mask, "max_sequence_length": MAX_TOKENS}
        if cfg:
            negative, negative_mask = pipe.encode_prompt(prompt=text.negative or " ", device=device,
                                                         max_sequence_length=MAX_TOKENS)
            args.update(negative_prompt_embeds=negative, negative_prompt_embeds_mask=negative_mask)
        return args

    def call_args(self, request) -> dict:
        return {"true_cfg_scale": request.guidance_scale}

    def to_vae(self, pipe, latents, size):
        """The transformer's 2x2-packed tokens (B, N, 64) as the VAE's (B, 16, 1, H, W) latents."""
        width, height = size
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)

    def from_vae(self, decoded):
        return decoded[:, :, 0]  # the video VAE's one frame

    def preview_for(self, pipe, size):
        return lambda packed: latents_to_preview(self.to_vae(pipe, packed, size), self.caps.latent_space, size)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> QwenImageRunner:
    """Load a Qwen-Image diffusers folder (safetensors only, offline). Runs on the engine thread."""
    import dataclasses

    import diffusers

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))  # fp16 overflows
    started = time.perf_counter()
    pipe = pretrained(diffusers.QwenImagePipeline, info.path, info.name, "this Qwen-Image model", dtype=ctx.dtype)
    return QwenImageRunner(info, pipe, caps, ctx, time.perf_counter() - started)
