"""Qwen-Image (Qwen, 20B MMDiT; Qwen2.5-VL-7B text encoder; a Wan-style 16-channel VAE): text to
image, img2img and inpaint from a diffusers folder or a Hugging Face cache snapshot, with true CFG
and a negative prompt. Strong at rendering text in the image. Qwen-Image-Edit and Edit Plus (the same
modules, reading the input image through Qwen2.5-VL too) edit an image by instruction: img2img is the
edit, inpaint the edit within a mask; Plus also takes reference images. Qwen-Image (not Edit) takes
ControlNets in text to image (InstantX's Union, ``engine.core.control``). Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import Mode, ModelInfo
from engine.devices import thresholds_for
from engine.families.base import ALL_PARAMETERS, Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.qwen_image import probe
from engine.families.qwen_image.rules import (EDIT_NEW_IMAGE, EDIT_STRENGTH, LOW_OTHER_GB, SAMPLER, SIZE_STEP,
                                              THRESHOLDS, TRANSFORMER_GB)
from engine.families.qwen_image.testmodel import TEST_MODELS

EDIT_LABELS = {"edit": "Qwen-Image-Edit", "edit-plus": "Qwen-Image-Edit Plus"}


# The control kinds of Qwen-Image's ControlNet (InstantX's Union: canny, soft edge, depth, pose), text to
# image only: diffusers has no img2img ControlNet pipeline for it, and its inpaint one wants InstantX's
# inpainting ControlNet (engine.core.control.CONTROL_PIPELINES refuses both modes in one line).
CONTROL_KINDS = ("canny", "lineart", "depth", "pose")
PLUS_REFERENCES = 2  # Edit Plus: up to two reference images beside the one it edits (its pipeline's design)


class QwenImage(Family):
    name = "qwen_image"
    instruction_editors = ("Qwen-Image-Edit",)
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "qwen_image" and info.kind == "checkpoint"

    def family_label(self, family: str) -> str | None:
        return "Qwen-Image" if family == "qwen_image" else None

    def capabilities(self, info: ModelInfo) -> Capabilities:
        if info.variant in EDIT_LABELS:
            # Qwen-Image-Edit's card: 50 steps, true CFG 4; it paints the whole image anew from the input
            # and the instruction, so there is no strength (inpaint keeps the edit inside the mask only).
            label = EDIT_LABELS[info.variant]
            plus = info.variant == "edit-plus"
            return capabilities(
                label, "Qwen-Image-Edit", parameters=tuple(p for p in ALL_PARAMETERS if p not in ("sampler", "strength")),
                reasons={"sampler": SAMPLER, "strength": EDIT_STRENGTH.format(label=label)},
                modes=(Mode.IMG2IMG, Mode.INPAINT), strength_shortens=False,
                refused={Mode.TXT2IMG: EDIT_NEW_IMAGE.format(label=label)},
                defaults={"width": 1024, "height": 1024, "steps": 50, "guidance_scale": 4.0},
                size_step=SIZE_STEP, latent_space="qwen_image",
                memory_thresholds=thresholds_for(info, THRESHOLDS, TRANSFORMER_GB, LOW_OTHER_GB),
                instruction_edit=True, references=PLUS_REFERENCES if plus else 0)
        # Qwen-Image's card: 1328x1328 (1:1), 50 steps, true CFG 4 with a negative prompt.
        return capabilities(
            "Qwen-Image", "Qwen-Image", parameters=tuple(p for p in ALL_PARAMETERS if p != "sampler"),
            reasons={"sampler": SAMPLER},
            defaults={"width": 1328, "height": 1328, "steps": 50, "guidance_scale": 4.0},
            size_step=SIZE_STEP, latent_space="qwen_image",
            memory_thresholds=thresholds_for(info, THRESHOLDS, TRANSFORMER_GB, LOW_OTHER_GB),
            addons=frozenset({"lora"}), control_kinds=CONTROL_KINDS)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.qwen_image import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        from engine.families.qwen_image.testcontrol import TEST_CONTROLS

        generators = tuple(TestModel(name, ("diffusers", "comfyui", "gguf"), _writer(name), what,
                                     contract=cls != "QwenImagePipeline") for name, (cls, what) in TEST_MODELS.items())
        return generators + tuple(TestModel(name, ("diffusers", "single-file"), _control_writer(name),
                                            f"{what} for the qwen-image test model")
                                  for name, what in TEST_CONTROLS.items())


def _writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.qwen_image import testmodel

        if layout in ("comfyui", "gguf"):  # DEST is the ComfyUI install; returns the transformer file to pick
            return testmodel.make_qwen_image_comfyui_test_model(dest, seed=seed, name=name, gguf=layout == "gguf")
        return testmodel.make_qwen_image_test_model(dest, seed=seed, name=name)

    return write


def _control_writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.qwen_image.testcontrol import write as write_control

        return write_control(name, dest, layout, seed)

    return write


FAMILY = QwenImage()
