"""DeepFloyd IF, Imagen's cascade: a T5 text encoder, a 64 px pixel-space stage I, stage II to
256 px and (when its folder is beside them) the SD x4 upscaler to 1024 px, run as one job. Text to
image only; its DDPM schedulers are part of the model (no sampler). Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelError, ModelInfo, Mode
from engine.families.deepfloyd_if import files
from engine.families.base import Capabilities, Family, LoadContext, Runner, TestModel, capabilities

REFUSED = "the DeepFloyd IF cascade makes new images only: choose New image, or use an SD model for img2img and inpainting"


class DeepFloydIF(Family):
    name = "deepfloyd-if"
    folder_pipelines = (files.STAGE1, files.STAGE2)

    def examine_folder(self, root, cls, index, result):
        return files.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "deepfloyd-if" and info.kind == "checkpoint"

    def capabilities(self, info: ModelInfo) -> Capabilities:
        # 1024 px when an x4 folder completes the cascade, else 256 (stage II's size); 50 stage I steps
        # (stage II and the x4 stage run half as many), guidance 7.
        try:
            side = 1024 if files.find_cascade(info.path).upscaler is not None else 256
        except ModelError:
            side = 256
        fixed = (f"the DeepFloyd IF cascade makes {side}×{side} images (a 64 px image, then its super-resolution "
                 "stages)")
        return capabilities(
            "DeepFloyd IF cascade", "DeepFloyd IF", modes=(Mode.TXT2IMG,),
            refused={Mode.IMG2IMG: REFUSED, Mode.INPAINT: REFUSED},
            parameters=("negative_prompt", "steps", "guidance_scale", "width", "height"),
            reasons={"width": fixed, "height": fixed},
            defaults={"width": side, "height": side, "steps": 50, "guidance_scale": 7.0},
            sizes=((side, side),),
            # The cascade holds T5-XXL (~9.5 GB in fp16) and three UNets: only large cards keep it all loaded.
            memory_thresholds=(("fast", 28.0), ("balanced", 24.0), ("low", 6.0)), latent_space="pixels")

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.deepfloyd_if import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        def write(dest: Path, _layout: str, seed: int = 0) -> Path:
            from engine.families.deepfloyd_if.testmodel import make_cascade_test_model

            return make_cascade_test_model(dest, seed=seed)

        return (TestModel("deepfloyd-if", ("diffusers",), write,
                          "DeepFloyd IF cascade (stage I, II and x4 folders inside DIR; prints stage I)"),)


FAMILY = DeepFloydIF()
