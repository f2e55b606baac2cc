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
import time
from pathlib import Path

from engine.api import GenerationRequest, ModelInfo, Result, Timings, batch_seed
from engine.core import prompt_policy
from engine.core.job import Job
from engine.core.loading import pretrained
from engine.core.decode import check_pixels
from engine.core.previews import pixels_to_preview
from engine.core.steps import StepReporter, cancel_within_steps
from engine.families.base import Capabilities, LoadContext, Runner
from engine.families.deepfloyd_if.files import Cascade, find_cascade
from engine.families.sd_x4 import runner as x4
from engine.families.sd_x4.requests import SCALE as X4_SCALE
from engine.files.folders import weights_variant

log = logging.getLogger(__name__)

STAGE2_FACTOR = 4
STAGE2_NOISE_LEVEL = 250  # IF's default for stage II
X4_NOISE_LEVEL = 100  # what DeepFloyd's cascade example gives the x4 stage
STAGE2_MAX_GUIDANCE, X4_MAX_GUIDANCE = 4.0, 9.0
MAX_TOKENS = 77  # IF's T5 reads 77 tokens
_SEED_MIX = 0x9E3779B9


def stage_seed(seed: int, stage: int) -> int:
    """The seed of a cascade stage (1, 2, 3) for an image seed: stage 1 uses the seed itself."""
    return batch_seed(seed, (stage - 1) * _SEED_MIX)


class IFRunner(Runner):
    """One loaded cascade: stage I, stage II and the optional x4 stage, each a diffusers pipeline."""

    def __init__(self, info: ModelInfo, cascade: Cascade, stage1, stage2, upscaler, caps: Capabilities,
                 ctx: LoadContext, load_seconds: float):
        # The stages have no VAE but the x4 one, which tiles the image itself: no VAE tiling.
        super().__init__(info, caps, ctx, load_seconds, vae_tiling=False)
        self.cascade = cascade
        self.stage1, self.stage2, self.x4 = stage1, stage2, upscaler
        self.placement.place_new(self.pipelines(), ctx.preset)

    def pipelines(self) -> list:
        return [p for p in (self.stage1, self.stage2, self.x4) if p is not None]

    @property
    def factor(self) -> int:
        return STAGE2_FACTOR * (X4_SCALE if self.x4 is not None else 1)

    @property
    def grid(self) -> int:
        """Stage I's sides are multiples of this (its UNet halves the image this many times over)."""
        return max(1, 2 ** (len(self.stage1.unet.config.block_out_channels) - 1))

    def stage1_size(self, width: int, height: int) -> tuple[int, int]:
        """Stage I's canvas for a final size: the size over the cascade's factor, on the UNet's grid."""
        grid = self.grid
        return tuple(max(grid, round(side / self.factor / grid) * grid) for side in (width, height))

    def generate(self, job: Job) -> Result:
        """Run the cascade for the job's request (seed resolved). Runs on the engine thread."""
        import torch

        # 1. Check inputs.
        request = job.request
        self.caps.check(request.mode)
        notices = job.notices
        text = prompt_policy.prepare(request.prompt, request.negative_prompt, "DeepFloyd IF", loras=False,
                                     weighting=False, notices=notices)
        prompt, negative = text.prompt, text.negative
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
        self.placement.ensure(request.memory_preset, self.pipelines())
        timings = {"encode": 0.0, "denoise": 0.0}

        def run():
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
                    seed = job.seed(index)
                    job.check_cancel(0)
                    image = self._run_image(job, stages, (prompt, negative), embeds, negative_embeds, seed, index)
                    if image.size != (request.width, request.height):
                        from PIL import Image

                        log.info("IF: %sx%s resized to %sx%s", *image.size, request.width, request.height)
                        image = image.resize((request.width, request.height), Image.Resampling.LANCZOS)
                    images.append(image)
                    seeds.append(seed)
                timings["denoise"] += time.perf_counter() - t0
            return images, seeds

        images, seeds = self.placement.run(run, self.pipelines(), notices)
        return Result(images=tuple(images), seeds=tuple(seeds), request=request, model=self.info,
                      model_hash=job.model_hash, settings=self.placement.settings,
                      timings=Timings(encode=timings["encode"], denoise=timings["denoise"]),
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

    def _run_image(self, job: Job, stages, texts, embeds, negative_embeds, seed, index):
        import torch

        request = job.request
        count = len(stages)

        def reporter(stage: int) -> StepReporter:
            spec = stages[stage - 1]
            return StepReporter(job, index, spec["steps"], preview=pixels_to_preview, stage=stage, stages=count,
                                stage_name=spec["name"])

        def generator(stage: int):
            return torch.Generator("cpu").manual_seed(stage_seed(seed, stage))

        w1, h1 = self.stage1_size(request.width, request.height)
        s1, s2 = stages[0], stages[1]
        # Stage I: text -> 64 px pixels.
        report1 = reporter(1)
        with cancel_within_steps([self.stage1.unet], report1):
            small = self.stage1(
                prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, num_inference_steps=s1["steps"],
                guidance_scale=s1["guidance"], height=h1, width=w1, generator=generator(1), output_type="pt",
                callback=report1.legacy, callback_steps=1,
            ).images
        check_pixels(small, "DeepFloyd IF stage I")
        # Stage II: 4x in pixel space, conditioned on the same T5 embeddings.
        guided2 = s2["guidance"] > 1.0
        report2 = reporter(2)
        with cancel_within_steps([self.stage2.unet], report2):
            medium = self.stage2(
                image=small, prompt_embeds=embeds, negative_prompt_embeds=negative_embeds if guided2 else None,
                num_inference_steps=s2["steps"], guidance_scale=s2["guidance"] if guided2 else 1.0,
                height=h1 * STAGE2_FACTOR, width=w1 * STAGE2_FACTOR, noise_level=STAGE2_NOISE_LEVEL,
                generator=generator(2), output_type="pt", callback=report2.legacy, callback_steps=1,
            ).images
        check_pixels(medium, "DeepFloyd IF stage II")
        image = pixels_to_preview(medium, limit=None)
        if self.x4 is None:
            return image
        # Stage III: the x4 latent upscaler, tiled like a standalone upscale.
        s3 = stages[2]
        spec = x4.TileJob(texts[0], texts[1], s3["steps"], s3["guidance"], X4_NOISE_LEVEL, stage_seed(seed, 3),
                          x4.X4_TILES[self.placement.settings.preset])

        def report3(done: int, total: int, preview) -> None:
            job.report(done, total, index, preview, 3, count, s3["name"])

        return x4.upscale_tiled(self.x4, image, spec, job, report3, job.notices)

    def _params(self) -> tuple[tuple[str, str], ...]:
        pairs = [("Stage II", self.cascade.stage2.name)]
        if self.x4 is not None:
            pairs.append(("Stage III", self.cascade.upscaler.name))
        return tuple(pairs)

    def close(self) -> None:
        """Free every stage's device memory. Engine thread."""
        super().close()
        self.stage1 = self.stage2 = self.x4 = None


def load(info: ModelInfo, caps: Capabilities, ctx: LoadContext) -> IFRunner:
    """Load the cascade whose stage I is ``info`` (safetensors only). Runs on the engine thread."""
    import diffusers

    started = time.perf_counter()
    cascade = find_cascade(info.path)
    common = dict(dtype=ctx.dtype, safety_checker=None, feature_extractor=None, watermarker=None,
                  requires_safety_checker=False)
    stage1 = pretrained(diffusers.IFPipeline, info.path, info.name, "DeepFloyd IF stage I",
                        variant=weights_variant(info.path), **common)
    stage2 = pretrained(diffusers.IFSuperResolutionPipeline, str(cascade.stage2), info.name,
                        f"its stage II ({cascade.stage2.name})", variant=weights_variant(cascade.stage2),
                        text_encoder=None, tokenizer=None, **common)
    upscaler = None
    if cascade.upscaler is not None:
        upscaler = x4.load_x4(str(cascade.upscaler), ctx.dtype, cascade.upscaler.name)
    log.info("DeepFloyd IF cascade: %s -> %s -> %s", Path(info.path).name, cascade.stage2.name,
             cascade.upscaler.name if cascade.upscaler else "(no x4 stage)")
    return IFRunner(info, cascade, stage1, stage2, upscaler, caps, ctx, time.perf_counter() - started)
