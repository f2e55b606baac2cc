"""The Qwen-Image runner: text to image, img2img and inpaint (QwenImagePipeline and its img2img /
inpaint siblings sharing one set of modules), run by the shared ``PipelineRunner`` with every core
guarantee. CFG is Qwen-Image's "true CFG" (a second pass with the negative prompt, an empty one when
none is given). Its transformer works on 2x2-packed tokens and its VAE is a video VAE (one frame).
Qwen2.5-VL reads plain text: A1111 weights are stripped with a notice; ``<lora:…>`` LoRAs apply through
the core (``engine.core.loras``).

Qwen-Image-Edit / Edit Plus run the same way through QwenImageEditPipeline / QwenImageEditPlusPipeline:
image to image is the instruction edit of the input (it is painted anew, conditioned on the input as
Qwen2.5-VL sees it and as latents, so there is no strength); inpaint is the same edit with only the
masked region pasted back (``imageprep``'s plan). Plus also takes the request's reference images as
its further input images. Every method runs on the engine thread.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.api import Mode, ModelInfo
from engine.core import reference
from engine.core.loading import LOAD_ERRORS, assembled, load_failed, pretrained
from engine.core.previews import latents_to_preview
from engine.devices import bf16_for_fp16
from engine.families.base import Capabilities, LoadContext
from engine.families.pipeline_runner import PipelineRunner

# variant -> mode -> the pipeline class that runs it (all on the loaded modules)
_CLASSES = {
    "": {Mode.TXT2IMG: "QwenImagePipeline", Mode.IMG2IMG: "QwenImageImg2ImgPipeline",
         Mode.INPAINT: "QwenImageInpaintPipeline"},
    # QwenImageEditInpaintPipeline is not used: it works at about one megapixel whatever size is asked.
    "edit": {Mode.IMG2IMG: "QwenImageEditPipeline", Mode.INPAINT: "QwenImageEditPipeline"},
    "edit-plus": {Mode.IMG2IMG: "QwenImageEditPlusPipeline", Mode.INPAINT: "QwenImageEditPlusPipeline"},
}


MAX_TOKENS = 512  # the pipelines' own default


class QwenImageRunner(PipelineRunner):
    """One loaded Qwen-Image (or Qwen-Image-Edit) model."""

    def pipeline_classes(self) -> dict[Mode, str]:
        return _CLASSES.get(self.info.variant, _CLASSES[""])

    def image_args(self, request, size):
        args, plan = super().image_args(request, size)
        if self.info.variant:  # an edit: no strength, no mask argument (the plan pastes the masked region back)
            references = reference.editor_pictures(request.references, self.caps.label)
            args = {"image": [args["image"], *references] if references else args["image"]}
        return args, plan

    def encode(self, pipe, text, request) -> dict:
        """The Qwen2.5-VL prompt embeddings and masks (the negative's too, with true CFG), once for the
        batch: the runner's prompt cache keeps them while the text is unchanged (live painting)."""
        # True CFG runs only with a negative prompt; an empty one is " " (the model card's advice).
        cfg = request.guidance_scale > 1.0
        if self.info.variant:
            # An edit's Qwen2.5-VL reads the instruction together with the input image(s): the pipeline
            # encodes them on each call (text-only embeddings here would drop the image from the instruction).
            return {"prompt": text.prompt, "negative_prompt": (text.negative or " ") if cfg else None}
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

    def result_params(self, request) -> tuple[tuple[str, str], ...]:
        return reference.editor_params(request.references)


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> QwenImageRunner:
    """Load a Qwen-Image (or Qwen-Image-Edit) diffusers folder (safetensors only, offline) or a split-layout
    transformer file (safetensors or GGUF, its parts found beside it). Runs on the engine thread."""
    import dataclasses

    import diffusers

    ctx = dataclasses.replace(ctx, dtype=bf16_for_fp16(ctx.device, ctx.dtype))  # fp16 overflows
    started = time.perf_counter()
    if info.format != "diffusers":  # a transformer file of ComfyUI's split layout
        from engine.families.qwen_image.split import load_split

        pipe = assembled(lambda: load_split(info, ctx.dtype), info.name, "this Qwen-Image model")
        return QwenImageRunner(info, pipe, caps, ctx, time.perf_counter() - started)
    classes = _CLASSES.get(info.variant, _CLASSES[""])
    cls = getattr(diffusers, classes.get(Mode.TXT2IMG) or classes[Mode.IMG2IMG])
    extra = {}
    if info.variant:  # an Edit model: Qwen2.5-VL's processor is built here (see ``processor``)
        from transformers import Qwen2Tokenizer

        from engine.families.qwen_image import processor

        what = "this Qwen-Image-Edit model"
        try:
            tokenizer = Qwen2Tokenizer.from_pretrained(str(Path(info.path) / "tokenizer"), local_files_only=True)
            extra = {"tokenizer": tokenizer, "processor": processor.load(Path(info.path), tokenizer)}
        except LOAD_ERRORS as exc:
            raise load_failed(info.name, what, exc, info.path) from exc
    else:
        what = "this Qwen-Image model"
    pipe = pretrained(cls, info.path, info.name, what, dtype=ctx.dtype, **extra)
    return QwenImageRunner(info, pipe, caps, ctx, time.perf_counter() - started)
