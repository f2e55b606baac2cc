"""The FLUX.2 [klein] runner: text to image and the edit by instruction through Flux2KleinPipeline
(img2img: the input image is Klein's reference, ``image=``), inpainting through
Flux2KleinInpaintPipeline, both on one set of modules (no copy, no reload). The request's reference
images are Klein's further input pictures in every mode (``image=[input, *references]``; inpaint:
``image_reference=``), at most four pictures in all (BFL's limit for Klein, the input image counted).

Run by the shared ``PipelineRunner``: the prompt (and a base model's negative prompt) is encoded once
per job by Qwen3; each image of a batch is denoised and comes back from the pipeline unpacked and
with the VAE's batch norm undone, so it goes to the core's guarded decode as it is. Prompt weighting
and LoRA tags are stripped with a notice (Qwen3 reads plain text). Every method runs on the engine
thread.

FLUX.2 [dev] runs through Flux2Pipeline the same way: its Mistral 3 prompt embeddings once per job,
the guidance scale as the model's embedded guidance, and its ``image=`` list made of the input image
(img2img: the edit by instruction) and the request's reference images (in either mode).
"""

from __future__ import annotations

import dataclasses
import time

from engine.api import InvalidRequest, Mode, ModelError, ModelInfo
from engine.core import reference
from engine.core.job import Job
from engine.core.loading import LOAD_ERRORS, assembled, load_failed, pretrained
from engine.devices import bf16_for_fp16
from engine.families.base import Capabilities, LoadContext
from engine.families.flux2 import probe
from engine.families.pipeline_runner import PipelineRunner

MIN_SIDE, MAX_RATIO = 64, 8  # what Flux2ImageProcessor.check_image_input takes of an input picture
MAX_TOKENS = 512  # the Qwen3 tokens Klein was trained with (the pipeline's own default)
INPAINT_AREA = 1024 * 1024  # Flux2KleinInpaintPipeline works on at most one megapixel
STRENGTH_UNUSED = ("{label} edits the whole image by the instruction (the image is its reference): "
                   "the strength applies to inpainting only.")


class Flux2Runner(PipelineRunner):
    """One loaded FLUX.2 [klein] model: the shared ``PipelineRunner`` with Klein's differences."""

    classes = {Mode.TXT2IMG: "Flux2KleinPipeline", Mode.IMG2IMG: "Flux2KleinPipeline",
               Mode.INPAINT: "Flux2KleinInpaintPipeline"}
    unscale = False  # the pipeline undoes the VAE's batch norm itself
    dev_classes = {Mode.TXT2IMG: "Flux2Pipeline", Mode.IMG2IMG: "Flux2Pipeline"}  # FLUX.2 [dev]
    _work: tuple[int, int] = (0, 0)
    _pictures: list = []  # the job's reference pictures (prepare)

    @property
    def dev(self) -> bool:
        return probe.is_dev(self.info.variant or "")

    def pipeline_classes(self) -> dict[Mode, str]:
        return self.dev_classes if self.dev else self.classes

    def prepare(self, job: Job):
        request = job.request
        if "guidance_scale" not in self.caps.parameters:  # distilled: no CFG, and the metadata says so
            request = request.replace(guidance_scale=1.0)
        if request.mode is Mode.INPAINT and request.width * request.height > INPAINT_AREA:
            job.notice(f"{self.caps.label} inpaints at most one megapixel: the region was made smaller and scaled "
                       f"back to {request.width}×{request.height}.")
        self._pictures = [self._fit(i, p) for i, p in
                          enumerate(reference.editor_pictures(request.references, self.caps.label, job.notices), 1)]
        # Klein: at most 4 pictures in all (BFL's limit), the image to edit among them. [dev] takes up to
        # 10 (BFL), more than a request carries: check_request's limit is the only one.
        most = self.caps.references
        if not self.dev and len(self._pictures) + (request.mode is not Mode.TXT2IMG) > most:
            raise InvalidRequest("references", f"{self.caps.label} takes at most {most} pictures at once: "
                                 f"the image to edit and up to {most - 1} reference images")
        return request

    def _fit(self, index: int, picture):
        """A reference picture as the pipeline takes it: one under 64 px on a side enlarged to 64 (a small
        reference layer's painted part); one more than 8 times as long one way as the other refused in one line."""
        from PIL import Image

        width, height = picture.size
        if not min(width, height) or max(width, height) > MAX_RATIO * min(width, height):
            raise InvalidRequest("references", f"reference image {index} is {width}×{height} px: {self.caps.label} "
                                 f"takes pictures at most {MAX_RATIO} times as long one way as the other")
        if min(width, height) < MIN_SIDE:
            scale = MIN_SIDE / min(width, height)
            picture = picture.resize((max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))),
                                     Image.Resampling.LANCZOS)
        return picture

    def image_args(self, request, size):
        args, plan = super().image_args(request, size)
        self._work = size
        pictures = self._pictures
        if request.mode is Mode.IMG2IMG:  # the reference image: the whole of it is the edit's input
            args.pop("strength", None)
            if pictures:
                args["image"] = [args["image"], *pictures]
        elif request.mode is Mode.INPAINT:
            if pictures:
                args["image_reference"] = pictures
        elif pictures:
            args["image"] = pictures
        return args, plan

    def to_vae(self, pipe, latents, size):
        """[klein]'s pipeline gives its latents back ready for the VAE; [dev]'s as packed tokens (B, N, 128)
        in the batch-normed space: unpacked, the VAE's batch norm undone and unpatchified, as its own
        decode does."""
        if not self.dev or latents.dim() == 4:
            return latents
        import torch

        width, height = size
        scale = pipe.vae_scale_factor * 2
        batch, _tokens, channels = latents.shape
        latents = latents.permute(0, 2, 1).reshape(batch, channels, height // scale, width // scale)
        bn = pipe.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps).to(latents.device,
                                                                                                 latents.dtype)
        return pipe._unpatchify_latents(latents * std + mean)

    def encode(self, pipe, text, request) -> dict:
        """Qwen3's stacked hidden states for the prompt (and, with CFG, the negative prompt), once."""
        device = self.placement.settings.device
        embeds, _ids = pipe.encode_prompt(prompt=text.prompt, device=device, max_sequence_length=MAX_TOKENS)
        args = {"prompt_embeds": embeds, "max_sequence_length": MAX_TOKENS}
        if "negative_prompt" in self.caps.parameters and request.guidance_scale > 1:
            args["negative_prompt_embeds"], _ids = pipe.encode_prompt(prompt=text.negative or "", device=device,
                                                                       max_sequence_length=MAX_TOKENS)
        return args

    def result_params(self, request) -> tuple[tuple[str, str], ...]:
        return reference.editor_params(request.references)

    def from_vae(self, decoded):
        """The decoded pixels at the working size (the inpaint pipeline works above 1 MP smaller)."""
        width, height = self._work
        if width and decoded.shape[-2:] != (height, width):
            import torch.nn.functional as F

            decoded = F.interpolate(decoded, size=(height, width), mode="bicubic", align_corners=False).clamp(-1, 1)
        return decoded


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> Flux2Runner:
    """Load a FLUX.2 [klein] or [dev] diffusers folder, or a split-layout transformer file (safetensors
    or GGUF) with its parts beside it, offline and safetensors only, and place it. Engine thread."""
    import diffusers

    started = time.perf_counter()
    dtype = bf16_for_fp16(ctx.device, ctx.dtype)
    ctx = dataclasses.replace(ctx, dtype=dtype)  # what the placement, previews and metadata say it runs in
    dev = probe.is_dev(info.variant or "")
    what = "this FLUX.2 [dev] model" if dev else "this FLUX.2 [klein] model"
    if info.format == "diffusers" and dev:
        from pathlib import Path

        from engine.families.flux2 import singlefile

        # The released tokenizer is a PixtralProcessor (its image half needs torchvision, and [dev] reads
        # no image through it): its tokenizer files are read directly.
        try:
            tokenizer = singlefile.load_mistral_tokenizer(probe.dev_tokenizer(Path(info.path)))
        except ModelError:
            raise
        except LOAD_ERRORS as exc:
            raise load_failed(info.name, what, exc) from exc
        pipe = pretrained(diffusers.Flux2Pipeline, info.path, info.name, what, dtype=dtype, tokenizer=None)
        pipe.register_modules(tokenizer=tokenizer)
    elif info.format == "diffusers":
        pipe = pretrained(diffusers.Flux2KleinPipeline, info.path, info.name, what, dtype=dtype)
    else:  # a transformer file of ComfyUI's split layout, with its parts beside it
        from engine.families.flux2 import singlefile

        pipe = assembled(lambda: singlefile.load_split(info, dtype, probe.is_distilled(info.variant or "distilled")),
                         info.name, what)
    return Flux2Runner(info, pipe, caps, ctx, time.perf_counter() - started)
