"""GAN super-resolution upscalers (ESRGAN, Real-ESRGAN RRDB and compact, SwinIR, ... any
single-image architecture spandrel reads), from ``.safetensors`` or weights-only ``.pth`` files.
They run through ``Engine.upscale``, tiled. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelInfo
from engine.families.base import Capabilities, Family, LoadContext, Runner, TestModel, capabilities

class GANUpscaler(Family):
    name = "gan"

    def handles(self, info: ModelInfo) -> bool:
        return info.kind == "upscaler" and info.family in ("", "gan")

    def capabilities(self, info: ModelInfo) -> Capabilities:
        return capabilities("Upscaler (GAN)", "A GAN upscaler", short="GAN", modes=(), refused={}, parameters=(),
                            memory_thresholds=(("fast", 4.0), ("balanced", 2.0), ("low", 1.0)),
                            latent_space="pixels", role="upscaler", upscale_kind="gan")

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.gan import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        def compact(dest: Path, _layout: str, seed: int = 0) -> Path:
            from engine.families.gan.testmodel import make_compact_test_model

            return make_compact_test_model(dest, seed=seed)

        def esrgan(dest: Path, _layout: str, seed: int = 0) -> Path:
            from engine.families.gan.testmodel import make_esrgan_test_model

            return make_esrgan_test_model(dest, seed=seed)

        return (TestModel("realesrgan-compact", ("single-file",), compact,
                          "x4 GAN upscaler whose output looks like the image (the demo upscaler)"),
                TestModel("esrgan", ("single-file",), esrgan, "x4 ESRGAN (RRDB) upscaler: random output"))


FAMILY = GANUpscaler()
