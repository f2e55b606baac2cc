"""The FLUX.1 runner: text to image, img2img and inpainting through FluxPipeline /
FluxImg2ImgPipeline / FluxInpaintPipeline, all sharing one set of modules (no copy, no reload).

Run by the shared ``PipelineRunner``: the prompt is encoded once per job (T5 + CLIP-L); each image
of a batch is denoised to packed latents, unpacked and decoded through the core's guarded decode.
Prompt weighting is stripped with a notice (T5 takes plain text); ``<lora:…>`` LoRAs apply through the
core (``engine.core.loras``), BFL-named ones renamed for diffusers' converter; control inputs through
``engine.core.control`` (the PipelineRunner's); reference images as FLUX.1 Redux tokens appended to
the prompt (``engine.core.reference.Redux``). Sizes off the 16 px
grid are made one size up (inputs edge-padded) and cropped back. Every method runs on the engine
thread.
"""

from __future__ import annotations

import dataclasses
import time

from engine.api import Mode, ModelInfo
from engine.core import reference, regions
from engine.core.loading import assembled, pretrained
from engine.core.previews import unpack_2x2
from engine.devices import bf16_for_fp16
from engine.families.base import Capabilities, LoadContext
from engine.families.pipeline_runner import PipelineRunner

# variant -> mode -> the pipeline class that runs it (all share the loaded modules)
_CLASSES = {
    "": {Mode.TXT2IMG: "FluxPipeline", Mode.IMG2IMG: "FluxImg2ImgPipeline", Mode.INPAINT: "FluxInpaintPipeline"},
    "fill": {Mode.INPAINT: "FluxFillPipeline"},
    "kontext": {Mode.TXT2IMG: "FluxKontextPipeline", Mode.IMG2IMG: "FluxKontextPipeline",
                Mode.INPAINT: "FluxKontextInpaintPipeline"},
}
# T5 tokens each variant was trained with (the pipelines' own defaults for the released models).
MAX_T5_TOKENS = {"dev": 512, "schnell": 256}
_BFL = ("diffusion_model.double_blocks.", "diffusion_model.single_blocks.", "model.diffusion_model.double_blocks.",
        "model.diffusion_model.single_blocks.")


class FluxRunner(PipelineRunner):
    """One loaded FLUX.1 model: the shared ``PipelineRunner`` with FLUX's differences."""

    def __init__(self, info, base, caps, ctx, load_seconds: float):
        super().__init__(info, base, caps, ctx, load_seconds)
        self.redux = reference.Redux(ctx.library, ctx.hasher, ctx.dtype)  # reference images, loaded when used
        self._redux_models: list = []  # the request's references' Redux models, as resolved for this job
        self._regions = None  # this job's (joint attention kwargs, mask maker) with regions (image_args)

    def park(self) -> None:
        super().park()
        self.redux.park()

    def nbytes(self) -> int:
        return super().nbytes() + self.redux.nbytes()

    def close(self) -> None:
        super().close()
        self.redux.clear()

    def prepare(self, job):
        """The request with each reference's Redux model, encoder and hash as run (one-line refusals for a
        missing or unfitting one)."""
        request = job.request
        self._redux_models = []
        if not request.references:
            return request
        models = self.redux.resolve(request.references, self.base.transformer.config.joint_attention_dim)
        for r, m in zip(request.references, models):
            if r.model_hash and m.hash10 and r.model_hash != m.hash10:
                job.notice(f"Redux model {m.name} is not the one asked for (hash {m.hash10}, not {r.model_hash}): "
                           "the image will differ")
        self._redux_models = models
        return request.replace(references=tuple(dataclasses.replace(r, model=m.path, model_hash=m.hash10, encoder=m.encoder)
                                                for r, m in zip(request.references, models)))

    def result_params(self, request):
        return tuple((f"Redux {i}", reference.redux_line(r, m))
                     for i, (r, m) in enumerate(zip(request.references, self._redux_models)))

    def reference_args(self, pipe, prompt_args, request):
        """The T5 prompt with the Redux tokens of the references that act (weight above 0) appended."""
        import torch

        pairs = [(r, m) for r, m in zip(request.references, self._redux_models) if r.weight > 0]
        if not pairs:
            return prompt_args
        embeds = prompt_args["prompt_embeds"]
        tokens = self.redux.tokens([r for r, _ in pairs], [m for _, m in pairs], self.placement.settings.device,
                                   embeds.dtype)
        if self._regions is not None:  # the regions' attention mask: the picture tokens act everywhere
            mask, made = self._regions
            mask["attention_mask"] = made(tokens.shape[1])
        return {**prompt_args, "prompt_embeds": torch.cat([embeds, tokens.to(embeds.device)], dim=1)}

    def pipeline_classes(self) -> dict[Mode, str]:
        return _CLASSES.get(self.info.variant, _CLASSES[""])

    def image_args(self, request, size):
        args, plan = super().image_args(request, size)
        areas = regions.active(request.regions)
        self._regions = None
        if areas:  # the joint attention masked: each region's image tokens see its prompt's tokens
            import torch

            # Image tokens: the latents (vae_scale_factor below the pixels) packed 2x2, row-major.
            step = self.base.vae_scale_factor * 2
            grid = (size[1] // step, size[0] // step)
            like = torch.empty(0, dtype=self.placement.dtype, device=self.placement.settings.device)
            lengths, shares = [self._tokens(self.base)] * (1 + len(areas)), regions.shares(areas, request, plan, size)

            def made(shared: int = 0):
                return regions.joint_attention_bias(lengths, shares, grid, like, shared)

            args["joint_attention_kwargs"] = mask = {"attention_mask": made()}
            self._regions = (mask, made)  # reference_args widens it for Redux's picture tokens
        if self.info.variant == "kontext":  # at the asked size, not Kontext's own preferred resolutions
            if request.mode is Mode.IMG2IMG:  # an edit by instruction: the whole image is the context
                args.pop("strength", None)
            args.update(max_area=size[0] * size[1], _auto_resize=False)
        return args, plan

    def _tokens(self, pipe) -> int:
        """T5 tokens per prompt (the encoder pads every prompt to them)."""
        return min(MAX_T5_TOKENS.get(self.info.variant, 512), pipe.tokenizer_2.model_max_length)

    def encode(self, pipe, text, request) -> dict:
        """The prompt embeddings (T5 sequence + CLIP pooled), once for the whole batch; with regions, each
        region prompt's T5 tokens follow the main prompt's (the pooled embedding stays the main prompt's)."""
        import torch

        tokens = self._tokens(pipe)
        # The device the placement runs on (asking the pipeline walks every module: a few ms a job).
        device = self.placement.settings.device
        embeds, pooled, _text_ids = pipe.encode_prompt(prompt=text.prompt, prompt_2=None, device=device,
                                                       max_sequence_length=tokens)
        if text.regions:
            embeds = torch.cat([embeds] + [pipe.encode_prompt(prompt=t, prompt_2=None, device=device,
                                                              max_sequence_length=tokens)[0] for t in text.regions], 1)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "max_sequence_length": tokens}

    def to_vae(self, pipe, latents, size):
        return unpack_2x2(latents, *size)

    def lora_source(self, path: str):
        """A LoRA in BFL / ComfyUI names with PEFT's ``lora_A`` / ``lora_B``
        (``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``) as the kohya ``lora_down`` /
        ``lora_up`` names diffusers converts (no alpha: scale 1, as PEFT's); any other file as it is."""
        from engine.files.headers import read_header

        if not any(k.startswith(_BFL) and ".lora_A." in k for k in read_header(path).tensors):
            return path
        from safetensors.torch import load_file

        return {k.removeprefix("model.").replace(".lora_A.", ".lora_down.").replace(".lora_B.", ".lora_up."): v
                for k, v in load_file(path).items()}


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> FluxRunner:
    """Load a FLUX.1 diffusers folder or split-layout transformer file (safetensors only, offline)
    and place it. Engine thread."""
    import diffusers

    started = time.perf_counter()
    dtype = bf16_for_fp16(ctx.device, ctx.dtype)
    ctx = dataclasses.replace(ctx, dtype=dtype)  # what the placement, previews and metadata say it runs in
    if info.format == "diffusers":
        pipe = pretrained(diffusers.FluxPipeline, info.path, info.name, "this FLUX.1 model", dtype=dtype)
    else:  # a transformer file of ComfyUI's split layout, with its parts beside it
        from engine.families.flux import singlefile

        def parts():
            transformer = None
            if info.format == "gguf":  # quantized weights stay quantized; each layer computes in ``dtype``
                from diffusers import GGUFQuantizationConfig

                transformer = singlefile.load_transformer(info.path, info.variant or "dev", dtype,
                                                          GGUFQuantizationConfig(compute_dtype=dtype))
            return singlefile.load_split(info, dtype, transformer)

        pipe = assembled(parts, info.name, "this FLUX.1 model")
    return FluxRunner(info, pipe, caps, ctx, time.perf_counter() - started)


