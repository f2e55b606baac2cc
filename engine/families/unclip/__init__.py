"""Stable unCLIP: DALL·E 2-style variations of an image from its CLIP image embedding (an SD 2.x
UNet conditioned on the noised embedding). Image-conditioned requests only: text-to-image needs the
separate Karlo prior, which Easel does not run. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelInfo, Mode
from engine.families.unclip import probe
from engine.families.base import Capabilities, Family, LoadContext, Runner, TestModel, capabilities

TXT2IMG_REFUSED = "Stable unCLIP makes variations of an image: use Variations, or give an image"
INPAINT_REFUSED = "Stable unCLIP makes variations of a whole image; it cannot inpaint: use an inpainting model"


class StableUnclip(Family):
    name = "unclip"
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "unclip"

    def capabilities(self, info: ModelInfo) -> Capabilities:
        # stable-diffusion-2-1-unclip: 768 px, v-prediction; diffusers' own defaults of 20 steps and CFG 10.
        return capabilities(
            "Stable unCLIP", "Stable unCLIP", modes=(Mode.IMG2IMG,),
            refused={Mode.TXT2IMG: TXT2IMG_REFUSED, Mode.INPAINT: INPAINT_REFUSED},
            defaults={"width": 768, "height": 768, "steps": 20, "guidance_scale": 10.0, "sampler": "DDIM"},
            addons=frozenset({"clip_skip"}), prompt_weighting=True,
            memory_thresholds=(("fast", 7.0), ("balanced", 5.0), ("low", 3.0)),  # an SD 2.x UNet
            latent_space="sd", role="variations", strength_shortens=False)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.unclip import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        def write(dest: Path, _layout: str, seed: int = 0) -> Path:
            from engine.families.unclip.testmodel import make_unclip_test_model

            return make_unclip_test_model(dest, seed=seed)

        return (TestModel("unclip", ("diffusers",), write, "Stable unCLIP (image variations)"),)


FAMILY = StableUnclip()
