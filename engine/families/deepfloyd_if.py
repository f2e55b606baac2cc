"""DeepFloyd IF: Imagen's cascade run locally. A T5 text encoder and a pixel-space base model make a
64 px image, stage II enlarges it 4x to 256 px, and the SD x4 upscaler (when its folder sits next to
the others) enlarges that 4x to 1024 px. One request runs the whole cascade as one job.

* The prompt is encoded once by stage I's T5; stage II reuses the embeddings (it has no encoder).
* Sizes: the request's width/height are the final size. Stage I runs at that size divided by the
  cascade's factor (16 with the x4 stage, else 4), rounded to its UNet's grid (8 px for the real
  model); the default sizes (1024, or 256 without the x4 stage) need no rounding. When rounding
  changes the size, the final image is resized to the request with LANCZOS and a notice says so.
* Steps and guidance: ``steps`` drive stage I; stage II and the x4 stage run half as many (IF's
  own 100/50 ratio). ``guidance_scale`` drives stage I; stage II uses at most 4 and the x4 stage at
  most 9, IF's defaults (1 or less turns guidance off everywhere).
* Seeds: stage k of image i draws its noise from seed + i mixed with k (a CPU generator), so any
  image of a batch regenerates alone and identically.
* Progress: every step of every stage, with stage/stages/stage_name ("Stage I 64 px", "Stage II
  256 px", "Upscale x4"); the pixel stages carry a preview image for free. Cancel stops within one
  step of whichever stage runs.
* No safety checker and no watermarker: an offline tool on the artist's own machine.

Everything here runs on the engine thread.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from engine.api import (
    Cancelled,
    EaselError,
    GenerationRequest,
    InvalidRequest,
    ModelError,
    ModelInfo,
    Mode,
    Progress,
    Result,
    Timings,
)
from engine.families import placement, sd_upscale
from engine.families.cascade_files import Cascade, find_cascade, weights_variant

log = logging.getLogger(__name__)

STAGE2_FACTOR = 4
STAGE2_NOISE_LEVEL = 250  # IF's default for stage II
X4_NOISE_LEVEL = 100  # what DeepFloyd's cascade example gives the x4 stage
STAGE2_MAX_GUIDANCE, X4_MAX_GUIDANCE = 4.0, 9.0
MAX_TOKENS = 77  # IF's T5 reads 77 tokens
_SEED_MIX = 0x9E3779B9
_PREVIEW_EVERY = 2


def stage_seed(seed: int, stage: int) -> int:
    """The seed of a cascade stage (1, 2, 3) for an image seed: stage 1 uses the seed itself."""
    return (seed + (stage - 1) * _SEED_MIX) % 2**32


class IFRunner:
    """One loaded cascade: stage I, stage II and the optional x4 stage, each a diffusers pipeline."""

    def __init__(self, info: ModelInfo, cascade: Cascade, stage1, stage2, x4, device: str, dtype,
                 load_seconds: float):
        self.info = info
        self.cascade = cascade
        self.stage1, self.stage2, self.x4 = stage1, stage2, x4
        self.device = device
        self.load_seconds = load_seconds
        self.placement = placement.Placement(info.family, device, dtype)

    @property
    def pipes(self) -> list:
        return [p for p in (self.stage1, self.stage2, self.x4) if p is not None]

    @property
    def factor(self) -> int:
        return STAGE2_FACTOR * (sd_upscale.SCALE if self.x4 is not None else 1)

    @property
    def grid(self) -> int:
        """Stage I's sides are multiples of this (its UNet halves the image this many times over)."""
        return max(1, 2 ** (len(self.stage1.unet.config.block_out_channels) - 1))

    def stage1_size(self, width: int, height: int) -> tuple[int, int]:
        """Stage I's canvas for a final size: the size over the cascade's factor, on the UNet's grid."""
        grid = self.grid
        return tuple(max(grid, round(side / self.factor / grid) * grid) for side in (width, height))

    def generate(self, request: GenerationRequest, on_progress, cancel: threading.Event | None,
                 model_hash: str, started: float) -> Result:
        """Run the cascade for ``request`` (seed already resolved). Runs on the engine thread."""
        import torch

        # 1. Check inputs.
        if request.mode is not Mode.TXT2IMG:
            raise InvalidRequest("mode", "DeepFloyd IF makes images from text only: use an SD model for "
                                 "img2img and inpainting")
        notices: list[str] = []
        prompt, negative = _plain_prompts(request, notices)
        w1, h1 = self.stage1_size(request.width, request.height)
        natural = (w1 * self.factor, h1 * self.factor)
        if natural != (request.width, request.height):
            notices.append(f"This DeepFloyd IF cascade makes sizes in steps of {self.grid * self.factor} px: it made "
                           f"{natural[0]}x{natural[1]}, resized to {request.width}x{request.height}.")
        if len(self.stage1.tokenizer(prompt).input_ids) > MAX_TOKENS:
            notices.append(f"The prompt is longer than DeepFloyd IF reads ({MAX_TOKENS} tokens); the end was left out.")
        if self.cascade.upscaler_problem and self.x4 is None:
            notices.append(f"The x4 upscaler next to this model cannot be used ({self.cascade.upscaler_problem}); "
                           f"the cascade ends at stage II.")
        stages = self._stages(request, w1, h1)
        self.placement.ensure(request.memory_preset, self.pipes)
        timings = {"encode": 0.0, "denoise": 0.0}

        def job():
            images, seeds = [], []
            with torch.inference_mode():
                # 2. Encode the prompt once (stage I's T5; stage II reuses it).
                t0 = time.perf_counter()
                guided = request.guidance_scale > 1.0
                embeds, negative_embeds = self.stage1.encode_prompt(
                    prompt, do_classifier_free_guidance=guided, num_images_per_prompt=1,
                    negative_prompt=negative or None, clean_caption=False)
                timings["encode"] += time.perf_counter() - t0
                # 3. The stages, image by image.
                t0 = time.perf_counter()
                for index in range(request.batch_count):
                    seed = (request.seed + index) % 2**32
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(0, request.steps)
                    image = self._run_image(request, stages, (prompt, negative), embeds, negative_embeds, seed,
                                            index, on_progress, cancel, started, notices)
                    if image.size != (request.width, request.height):
                        from PIL import Image

                        log.info("IF: %sx%s resized to %sx%s", *image.size, request.width, request.height)
                        image = image.resize((request.width, request.height), Image.Resampling.LANCZOS)
                    images.append(image)
                    seeds.append(seed)
                timings["denoise"] += time.perf_counter() - t0
            return images, seeds

        images, seeds = self.placement.run(job, self.pipes, notices)
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=model_hash, settings=self.placement.settings,
                      timings=Timings(encode=timings["encode"], denoise=timings["denoise"],
                                      total=time.perf_counter() - started),
                      params=self._params(), notices=tuple(dict.fromkeys(notices)))

    def _stages(self, request: GenerationRequest, w1: int, h1: int) -> list[dict]:
        half = max(1, round(request.steps / 2))
        g = request.guidance_scale
        stages = [
            {"name": f"Stage I {min(w1, h1)} px", "steps": request.steps, "guidance": g},
            {"name": f"Stage II {min(w1, h1) * STAGE2_FACTOR} px", "steps": half,
             "guidance": min(g, STAGE2_MAX_GUIDANCE)},
        ]
        if self.x4 is not None:
            stages.append({"name": "Upscale x4", "steps": half, "guidance": min(g, X4_MAX_GUIDANCE)})
        return stages

    def _run_image(self, request, stages, texts, embeds, negative_embeds, seed, index, on_progress, cancel,
                   started, notices):
        import torch

        count = len(stages)

        def reporter(stage: int):
            spec = stages[stage - 1]

            def report(step: int, total: int, preview=None):
                if on_progress is not None:
                    on_progress(Progress(step=step, total=total, elapsed=time.perf_counter() - started,
                                         image_index=index, batch_count=request.batch_count, stage=stage,
                                         stages=count, stage_name=spec["name"], preview=preview))
                if cancel is not None and cancel.is_set():
                    raise Cancelled(step, total)

            return report

        def pixel_callback(stage: int):
            report, total = reporter(stage), stages[stage - 1]["steps"]

            def callback(i, _t, pixels):
                step = i + 1
                preview = _pixels_to_image(pixels) if step % _PREVIEW_EVERY == 0 or step == total else None
                report(step, total, preview)

            return callback

        def generator(stage: int):
            return torch.Generator("cpu").manual_seed(stage_seed(seed, stage))

        w1, h1 = self.stage1_size(request.width, request.height)
        s1, s2 = stages[0], stages[1]
        # Stage I: text -> 64 px pixels.
        small = self.stage1(
            prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, num_inference_steps=s1["steps"],
            guidance_scale=s1["guidance"], height=h1, width=w1, generator=generator(1), output_type="pt",
            callback=pixel_callback(1), callback_steps=1,
        ).images
        _check_finite(small, "stage I")
        # Stage II: 4x in pixel space, conditioned on the same T5 embeddings.
        guided2 = s2["guidance"] > 1.0
        medium = self.stage2(
            image=small, prompt_embeds=embeds, negative_prompt_embeds=negative_embeds if guided2 else None,
            num_inference_steps=s2["steps"], guidance_scale=s2["guidance"] if guided2 else 1.0,
            height=h1 * STAGE2_FACTOR, width=w1 * STAGE2_FACTOR, noise_level=STAGE2_NOISE_LEVEL,
            generator=generator(2), output_type="pt", callback=pixel_callback(2), callback_steps=1,
        ).images
        _check_finite(medium, "stage II")
        image = _pixels_to_image(medium, limit=None)
        if self.x4 is None:
            return image
        # Stage III: the x4 latent upscaler, tiled like a standalone upscale.
        s3 = stages[2]
        report3 = reporter(3)
        job = sd_upscale.TileJob(texts[0], texts[1], s3["steps"], s3["guidance"], X4_NOISE_LEVEL, stage_seed(seed, 3),
                                 placement.X4_TILES[self.placement.settings.preset])
        return sd_upscale.upscale_tiled(self.x4, image, job, lambda done, total, preview: report3(done, total, preview),
                                        cancel, notices)

    def _params(self) -> tuple[tuple[str, str], ...]:
        pairs = [("Stage II", self.cascade.stage2.name)]
        if self.x4 is not None:
            pairs.append(("Stage III", self.cascade.upscaler.name))
        return tuple(pairs)

    def close(self) -> None:
        """Free every stage's device memory. Engine thread."""
        placement.free(self.pipes, self.device)
        self.stage1 = self.stage2 = self.x4 = None


def load(info: ModelInfo, device: str, dtype) -> IFRunner:
    """Load the cascade whose stage I is ``info`` (safetensors only). Runs on the engine thread."""
    import diffusers

    from engine import loading  # noqa: F401  (quiets diffusers/transformers progress bars)

    started = time.perf_counter()
    cascade = find_cascade(info.path)
    common = dict(local_files_only=True, use_safetensors=True, dtype=dtype, safety_checker=None,
                  feature_extractor=None, watermarker=None, requires_safety_checker=False)
    try:
        stage1 = diffusers.IFPipeline.from_pretrained(info.path, variant=weights_variant(info.path), **common)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(info.name, f"could not load DeepFloyd IF stage I: {_first_line(exc)}") from exc
    try:
        stage2 = diffusers.IFSuperResolutionPipeline.from_pretrained(
            str(cascade.stage2), variant=weights_variant(cascade.stage2), text_encoder=None, tokenizer=None, **common)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(info.name, f"could not load its stage II ({cascade.stage2.name}): {_first_line(exc)}") from exc
    x4 = None
    if cascade.upscaler is not None:
        x4 = sd_upscale.load_x4(str(cascade.upscaler), device, dtype, cascade.upscaler.name)
    for pipe in (stage1, stage2):
        pipe.set_progress_bar_config(disable=True)
    log.info("DeepFloyd IF cascade: %s -> %s -> %s", Path(info.path).name, cascade.stage2.name,
             cascade.upscaler.name if cascade.upscaler else "(no x4 stage)")
    return IFRunner(info, cascade, stage1, stage2, x4, device, dtype, time.perf_counter() - started)


def _plain_prompts(request: GenerationRequest, notices: list[str]) -> tuple[str, str]:
    """The prompts as T5 reads them: A1111 weights and LoRA tags are SD-only, so they become plain text
    (with a notice), and text past 77 tokens is cut (with a notice)."""
    from engine.prompts import extract_loras, parse_weights

    out = []
    for text in (request.prompt, request.negative_prompt):
        parsed = extract_loras(text)
        if parsed.loras:
            notices.append("LoRAs are for SD models: " + ", ".join(f"<lora:{r.name}>" for r in parsed.loras)
                           + " left out of the DeepFloyd IF prompt.")
        fragments = parse_weights(parsed.text)
        if any(weight != 1.0 for _, weight in fragments):
            notices.append("Prompt weights such as (word:1.2) do not apply to DeepFloyd IF; the words were used "
                           "as plain text.")
        out.append("".join(fragment for fragment, _ in fragments))
    return out[0], out[1]


def _pixels_to_image(pixels, limit: int | None = 256):
    """The first image of a [-1, 1] pixel batch as a PIL RGB image (at most ``limit`` px a side)."""
    from PIL import Image

    import torch

    arr = ((pixels[0].detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    image = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")
    if limit is not None and max(image.size) > limit:
        image.thumbnail((limit, limit))
    return image


def _check_finite(pixels, stage: str) -> None:
    import torch

    if not torch.isfinite(pixels).all():
        raise EaselError(f"DeepFloyd IF {stage} produced an invalid image (NaN values) in half precision; "
                         "try the CPU or another memory preset")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
