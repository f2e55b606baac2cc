"""Stable Diffusion 1.x, 2.x (incl. 768 v-prediction) and SDXL: base, inpainting and Turbo models,
from single ``.safetensors`` checkpoints or diffusers folders. The one family with A1111 prompt
weighting, LoRAs, textual-inversion embeddings, a replacement VAE and clip skip. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import CONTROL_KINDS, MAX_REFERENCES, ModelInfo
from engine.families.sd import probe
from engine.families.base import ALL_PARAMETERS, Capabilities, Family, LoadContext, Runner, TestModel, capabilities

NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
CONTROL_FAMILIES = ("sd1", "sdxl")  # ControlNets (engine.core.control): SD 1.5 and SDXL
TURBO_STEPS = (1, 4)
# Free device memory (GiB) "auto" needs for each preset.
THRESHOLDS = {
    "sd1": (("fast", 6.0), ("balanced", 4.5), ("low", 2.5)),
    "sd2": (("fast", 7.0), ("balanced", 5.0), ("low", 3.0)),
    "sdxl": (("fast", 12.0), ("balanced", 9.0), ("low", 4.5)),
}
# make-test-model names -> (what they are)
TEST_MODELS = {
    "sd15": "SD 1.5", "sd15-inpaint": "SD 1.5 inpainting", "sd2-v": "SD 2.x 768 v-prediction",
    "sd2-inpaint": "SD 2.x inpainting", "sdxl": "SDXL", "sdxl-inpaint": "SDXL inpainting",
}


class StableDiffusion(Family):
    name = "sd"
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family in NAMES and info.kind in ("checkpoint", "inpaint")

    def capabilities(self, info: ModelInfo) -> Capabilities:
        base = NAMES[info.family]
        common = dict(addons=frozenset({"lora", "embedding", "vae", "clip_skip"}), prompt_weighting=True, speeds=True,
                      memory_thresholds=THRESHOLDS[info.family],
                      latent_space="sdxl" if info.family == "sdxl" else "sd",
                      control_kinds=CONTROL_KINDS if info.family in CONTROL_FAMILIES else (),
                      references=MAX_REFERENCES if info.family in CONTROL_FAMILIES else 0,  # IP-Adapters: SD 1.5 and SDXL
                      regions=True,  # masked cross-attention (engine.core.regions), every UNet of the family
                      latent_upscale=not info.inpainting)  # its img2img pipelines take latents as ``image=``
        if info.variant == "turbo":
            # SD-Turbo and SDXL-Turbo: trained at 512 px for 1-4 steps without classifier-free guidance.
            return capabilities(
                f"{base} Turbo (1–4 steps)", "Turbo models", short=base,
                parameters=tuple(p for p in ALL_PARAMETERS if p != "negative_prompt"),
                reasons={"guidance_scale": "Turbo models are distilled to run without CFG: it stays at 0"},
                defaults={"width": 512, "height": 512, "steps": 1, "guidance_scale": 0.0, "sampler": "Euler a"},
                step_range=TURBO_STEPS, **common)
        if info.family == "sdxl":
            side = 1024
        elif info.family == "sd2" and info.prediction_type == "v_prediction" and not info.inpainting:
            side = 768
        else:
            side = 512
        label = f"{base} inpainting" if info.inpainting else base
        return capabilities(label, base, defaults={"width": side, "height": side, "steps": 25,
                                                   "guidance_scale": 7.0, "sampler": "Euler a"}, **common)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.sd import runner

        return runner.load(info, self.capabilities(info), ctx)

    def family_label(self, family: str) -> str | None:
        return NAMES.get(family)

    def test_models(self) -> tuple[TestModel, ...]:
        from engine.families.sd.testcontrol import TEST_CONTROLS

        generators = tuple(TestModel(name, ("diffusers", "single-file"), _writer(name), what)
                           for name, what in TEST_MODELS.items())
        controls = tuple(TestModel(name, ("diffusers", "single-file"), _control_writer(name),
                                   f"{kind} ControlNet for the {fits} test model")
                         for name, (fits, kind) in TEST_CONTROLS.items())
        depth = TestModel("depth-anything", ("diffusers",), _depth_writer,
                          "tiny Depth Anything depth model (the depth preprocessor of depth controls)")
        adapters = tuple(TestModel(f"ip-adapter-{name}", ("single-file",), _adapter_writer(name),
                                   f"IP-Adapter (reference images) for the {name} test model, with its tiny image encoder")
                         for name in ("sd15", "sdxl"))
        return generators + controls + (depth,) + adapters


def _writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.testmodels import make_test_model

        return make_test_model(dest, family=name, single_file=layout == "single-file", seed=seed)

    return write


def _control_writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.sd.testcontrol import write as write_control

        return write_control(name, dest, layout, seed)

    return write


def _adapter_writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        """``dest``/ip-adapter_<name>_test.safetensors with its image encoder in ``dest``/image_encoder (h94's layout)."""
        from engine.testaddons import make_image_encoder, make_ip_adapter

        make_image_encoder(Path(dest) / "image_encoder", seed=seed + 5)
        return make_ip_adapter(Path(dest) / f"ip-adapter_{name}_test.safetensors", family=name, seed=seed + 6)

    return write


def _depth_writer(dest: Path, layout: str, seed: int = 0) -> Path:
    from engine.testdepth import write

    return write(dest, seed)


FAMILY = StableDiffusion()
