"""Qwen-Image (Qwen, 20B MMDiT; Qwen2.5-VL-7B text encoder; a Wan-style 16-channel VAE): text to
image, img2img and inpaint from a diffusers folder or a Hugging Face cache snapshot, with true CFG
and a negative prompt. Strong at rendering text in the image. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelInfo
from engine.families.base import ALL_PARAMETERS, Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.qwen_image import probe
from engine.families.qwen_image.rules import SAMPLER, SIZE_STEP, THRESHOLDS


class QwenImage(Family):
    name = "qwen_image"
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "qwen_image" and info.kind == "checkpoint"

    def family_label(self, family: str) -> str | None:
        return "Qwen-Image" if family == "qwen_image" else None

    def capabilities(self, info: ModelInfo) -> Capabilities:
        # Qwen-Image's card: 1328x1328 (1:1), 50 steps, true CFG 4 with a negative prompt.
        return capabilities(
            "Qwen-Image", "Qwen-Image", parameters=tuple(p for p in ALL_PARAMETERS if p != "sampler"),
            reasons={"sampler": SAMPLER},
            defaults={"width": 1328, "height": 1328, "steps": 50, "guidance_scale": 4.0},
            size_step=SIZE_STEP, memory_thresholds=THRESHOLDS, latent_space="qwen_image",
            addons=frozenset({"lora"}))

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.qwen_image import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        def write(dest: Path, _layout: str, seed: int = 0) -> Path:
            from engine.families.qwen_image.testmodel import make_qwen_image_test_model

            return make_qwen_image_test_model(dest, seed=seed)

        return (TestModel("qwen-image", ("diffusers",), write, "Qwen-Image (MMDiT, Qwen2.5-VL encoder)"),)


FAMILY = QwenImage()
