"""The Stable Diffusion x4 upscaler (``stabilityai/stable-diffusion-x4-upscaler``): a latent
diffusion upscaler guided by the source's prompt, run tiled. Also the DeepFloyd IF cascade's
optional stage III. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelInfo, Mode
from engine.families.sd_x4 import probe
from engine.families.base import Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.sd_x4.requests import X4_GUIDANCE, X4_STEPS

REFUSED = "the x4 upscaler enlarges an image: use Upscale, or give an image"


class SDx4Upscaler(Family):
    name = "sd-x4-upscaler"
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "sd-x4-upscaler"

    def capabilities(self, info: ModelInfo) -> Capabilities:
        return capabilities(
            "Upscaler (diffusion x4)", "The x4 upscaler", short="SD x4", modes=(Mode.IMG2IMG,),
            refused={Mode.TXT2IMG: REFUSED, Mode.INPAINT: REFUSED},
            parameters=("negative_prompt", "steps", "guidance_scale"),
            reasons={"width": "the x4 upscaler makes 4x its source", "height": "the x4 upscaler makes 4x its source"},
            defaults={"width": 512, "height": 512, "steps": X4_STEPS, "guidance_scale": X4_GUIDANCE},
            memory_thresholds=(("fast", 8.0), ("balanced", 5.0), ("low", 3.0)), latent_space="sd",
            role="upscaler", upscale_kind="diffusion")

    def upscale_request(self, image, model_path: str, info: ModelInfo, stored=None, seed: int | None = None):
        from engine.families.sd_x4.requests import upscale_request

        return upscale_request(image, model_path, info, stored, seed)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.sd_x4 import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        def write(dest: Path, _layout: str, seed: int = 0) -> Path:
            from engine.families.sd_x4.testmodel import make_x4_test_model

            return make_x4_test_model(dest, seed=seed)

        return (TestModel("sd-x4-upscaler", ("diffusers",), write, "SD x4 diffusion upscaler"),)


FAMILY = SDx4Upscaler()
