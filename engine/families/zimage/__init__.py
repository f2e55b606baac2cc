"""Z-Image (Tongyi-MAI, 6B single-stream DiT; Qwen3-4B text encoder; the FLUX VAE): Turbo (distilled,
about 8 steps without CFG) and Base (28-50 steps with CFG); text to image, img2img and inpaint from a
diffusers folder, a Hugging Face cache snapshot, or ComfyUI's split layout (the transformer as
``.safetensors``, fp8 included, or GGUF; ``qwen_3_4b`` and the FLUX.1 ``ae.safetensors`` found beside it:
``engine.files.split``). Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import ModelInfo
from engine.devices import thresholds_for
from engine.families.base import ALL_PARAMETERS, Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.zimage import probe
from engine.families.zimage.rules import (LOW_OTHER_GB, SIZE_STEP, THRESHOLDS, TRANSFORMER_GB, TURBO_CFG, TURBO_NEGATIVE,
                                          TURBO_STEPS)

# The control kinds of Z-Image's ControlNet (alibaba-pai's Fun Union: canny, HED line art, depth, pose).
CONTROL_KINDS = ("lineart", "canny", "depth", "pose")
TEST_MODELS = {"zimage-turbo": "Z-Image Turbo (8-step distilled DiT)", "zimage": "Z-Image Base (DiT with CFG)"}


class ZImage(Family):
    name = "zimage"
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "zimage" and info.kind == "checkpoint"

    def family_label(self, family: str) -> str | None:
        return "Z-Image" if family == "zimage" else None

    def capabilities(self, info: ModelInfo) -> Capabilities:
        common = dict(short="Z-Image", size_step=SIZE_STEP, latent_space="zimage",
                      memory_thresholds=thresholds_for(info, THRESHOLDS, TRANSFORMER_GB, LOW_OTHER_GB),
                      addons=frozenset({"lora"}), control_kinds=CONTROL_KINDS)
        if info.variant == "turbo":
            # Z-Image-Turbo's card: 1024 px, 9 scheduler steps (8 transformer passes), guidance 0.
            return capabilities(
                "Z-Image Turbo (about 8 steps)", "Z-Image Turbo",
                parameters=tuple(p for p in ALL_PARAMETERS if p not in ("negative_prompt", "guidance_scale", "sampler")),
                reasons={"guidance_scale": TURBO_CFG, "negative_prompt": TURBO_NEGATIVE,
                         "sampler": "Z-Image uses its own flow-matching schedule"},
                defaults={"width": 1024, "height": 1024, "steps": 9, "guidance_scale": 0.0},
                step_range=TURBO_STEPS, **common)
        # Z-Image (Base): the card recommends 28-50 steps and CFG 3-5.
        return capabilities(
            "Z-Image", "Z-Image", parameters=tuple(p for p in ALL_PARAMETERS if p != "sampler"),
            reasons={"sampler": "Z-Image uses its own flow-matching schedule"},
            defaults={"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 4.0}, **common)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.zimage import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        from engine.families.zimage.testcontrol import TEST_CONTROLS

        generators = tuple(TestModel(name, ("diffusers", "comfyui", "gguf"), _writer(name), what)
                           for name, what in TEST_MODELS.items())
        return generators + tuple(TestModel(name, ("diffusers", "single-file"), _control_writer(name),
                                            f"{what} for the zimage-turbo and zimage test models")
                                  for name, what in TEST_CONTROLS.items())


def _writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.zimage import testmodel

        turbo = name == "zimage-turbo"
        if layout in ("comfyui", "gguf"):  # DEST is the ComfyUI install; returns the transformer file to pick
            return testmodel.make_zimage_comfyui_test_model(dest, seed=seed, turbo=turbo, gguf=layout == "gguf")
        return testmodel.make_zimage_test_model(dest, seed=seed, turbo=turbo)

    return write


def _control_writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.zimage.testcontrol import write as write_control

        return write_control(name, dest, layout, seed)

    return write


FAMILY = ZImage()
