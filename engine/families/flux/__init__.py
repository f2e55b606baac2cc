"""FLUX.1 [dev], [schnell], Fill and Kontext (Black Forest Labs): a flow-matching image transformer
over 2x2-packed 16-channel latents, conditioned by T5-XXL (the prompt) and CLIP-L (a pooled vector).
Text to image, img2img and inpainting from diffusers folders, Hugging Face cache snapshots, ComfyUI's
split layout and GGUF transformers. Fill inpaints (and outpaints) only; Kontext's img2img is an edit
by instruction (the prompt says what to change in the image).

[dev] is guidance-distilled: its guidance is an input of the transformer (default 3.5), not
classifier-free guidance, so it takes no negative prompt. [schnell] is timestep-distilled to 1-4
steps and takes no guidance at all. Neither uses a sampler (flow-matching Euler is part of the
model). Told apart by the transformer config's ``guidance_embeds``. Any thread.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import MAX_REFERENCES, Mode, ModelInfo
from engine.devices import thresholds_for
from engine.families.base import Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.flux import probe

FAMILY_NAME = "flux1"
# Free device memory (GiB) "auto" needs for each preset. bf16 weights: transformer ~23.8 GB, T5-XXL
# ~9.5 GB, CLIP-L and the VAE ~0.4 GB. "fast" keeps all of it on the GPU; "balanced" the same with
# the VAE sliced and tiled (a peak that a 1024 px decode would otherwise add); "low" moves each model
# onto the GPU only while it runs (the transformer alone, plus activations); below that "minimal"
# streams it layer by layer. "low" keeps the transformer and T5 in fp8 storage on CUDA
# (engine.core.precision: 11.9 GB and 4.8 GB), so it needs the fp8 transformer plus activations, not 26 GB.
# Computed from the weight sizes, not measured.
THRESHOLDS = (("fast", 36.0), ("balanced", 34.0), ("low", 14.0))
# For a GGUF transformer (engine.devices.thresholds_for): the bf16 transformer is 23.8 GB, and in "low"
# the largest other part is T5-XXL in fp8 storage, 4.8 GB.
TRANSFORMER_GB, LOW_OTHER_GB = 23.8, 4.8
NO_NEGATIVE = "{label} has no negative prompt: it is guidance-distilled (no classifier-free guidance)"
NO_SAMPLER = "{label} uses its own flow-matching schedule: there is no sampler to choose"
LABELS = {"dev": "FLUX.1 [dev]", "schnell": "FLUX.1 [schnell]", "fill": "FLUX.1 Fill [dev]",
          "kontext": "FLUX.1 Kontext [dev]"}
FILL_ONLY = ("FLUX.1 Fill repaints a masked region only: paint a mask (Inpaint) or extend the canvas; use FLUX.1 "
             "[dev] or [schnell] for new images and image to image")
# The control kinds FLUX.1 [dev] / [schnell] take (engine.core.control: InstantX / XLabs canny and depth,
# Shakker-Labs and InstantX Union: canny, tile, depth, pose; line art and scribbles through the canny mode).
CONTROL_KINDS = ("scribble", "lineart", "canny", "depth", "pose", "tile")
TEST_MODELS = {"flux1-dev": ("dev", "FLUX.1 [dev] (guidance-distilled)"),
               "flux1-schnell": ("schnell", "FLUX.1 [schnell] (1-4 steps)"),
               "flux1-fill": ("fill", "FLUX.1 Fill [dev] (inpaint / outpaint)"),
               "flux1-kontext": ("kontext", "FLUX.1 Kontext [dev] (edit an image by instruction)")}


class Flux(Family):
    name = "flux"
    folder_pipelines = probe.PIPELINES
    instruction_editors = ("FLUX.1 Kontext",)

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == FAMILY_NAME and info.kind in ("checkpoint", "inpaint")

    def capabilities(self, info: ModelInfo) -> Capabilities:
        variant = info.variant or "dev"
        label = LABELS.get(variant, LABELS["dev"])
        parameters = ("steps", "width", "height", "strength") + (() if variant == "schnell" else ("guidance_scale",))
        reasons = {"negative_prompt": NO_NEGATIVE.format(label=label), "sampler": NO_SAMPLER.format(label=label)}
        modes = (Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT)
        refused = {}
        if variant == "schnell":
            reasons["guidance_scale"] = f"{label} is distilled to run without guidance"
            defaults = {"width": 1024, "height": 1024, "steps": 4, "guidance_scale": 0.0}
        elif variant == "fill":  # BFL's recommended guidance for Fill is far higher than [dev]'s
            modes = (Mode.INPAINT,)
            refused = {m: FILL_ONLY for m in (Mode.TXT2IMG, Mode.IMG2IMG)}
            defaults = {"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 30.0}
        elif variant == "kontext":
            defaults = {"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 2.5}
        else:
            defaults = {"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 3.5}
        return capabilities(label, "FLUX.1", modes=modes, refused=refused, parameters=parameters, reasons=reasons,
                            defaults=defaults, size_step=16, latent_space="flux",
                            memory_thresholds=thresholds_for(info, THRESHOLDS, TRANSFORMER_GB, LOW_OTHER_GB),
                            addons=frozenset({"lora"}), instruction_edit=variant == "kontext",
                            regions=variant != "kontext",  # Kontext's image tokens include its input image's
                            control_kinds=CONTROL_KINDS if variant in ("dev", "schnell") else (),
                            # reference images: FLUX.1 Redux (engine.core.reference.Redux)
                            references=MAX_REFERENCES if variant in ("dev", "schnell") else 0)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.flux import runner

        return runner.load(info, self.capabilities(info), ctx)

    def inpaint_partner(self, info: ModelInfo, models) -> ModelInfo | None:
        """FLUX.1 Fill inpaints and outpaints for [dev] and [schnell] (Kontext inpaints by its
        instruction itself): a usable Fill model of the library, one in the same format first."""
        if (info.variant or "dev") not in ("dev", "schnell"):
            return None
        fills = [m for m in models if m.usable and m.family == FAMILY_NAME and m.variant == "fill"]
        return min(fills, key=lambda m: (m.format != info.format, m.name), default=None)

    def family_label(self, family: str) -> str | None:
        return "FLUX.1" if family == FAMILY_NAME else None

    def test_models(self) -> tuple[TestModel, ...]:
        from engine.families.flux.testcontrol import TEST_CONTROLS

        generators = tuple(TestModel(name, ("diffusers", "comfyui", "gguf", "single-file"), _writer(variant), what)
                           for name, (variant, what) in TEST_MODELS.items())
        controls = tuple(TestModel(name, ("diffusers", "single-file"), _control_writer(name),
                                   f"{'Union' if modes else 'canny'} ControlNet for the flux1-{fits} and flux1-schnell "
                                   "test models")
                         for name, (fits, modes) in TEST_CONTROLS.items())
        redux = TestModel("redux-flux1", ("single-file", "comfyui"), _redux_writer,
                          "FLUX.1 Redux (reference images) for the flux1-dev and flux1-schnell test models, with its "
                          "tiny SigLIP image encoder")
        return generators + controls + (redux,)


def _writer(variant: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.flux import testmodel

        if layout == "comfyui":  # DEST is the ComfyUI install; prints the transformer file to pick
            return testmodel.make_flux_comfyui_test_model(dest, variant, seed=seed)
        if layout == "gguf":  # the same, with the transformer as a Q8_0 GGUF file
            return testmodel.make_flux_gguf_test_model(dest, variant, seed=seed)
        if layout == "single-file":  # one all-in-one checkpoint (DEST: the file, or a ComfyUI install)
            return testmodel.make_flux_single_file_test_model(dest, variant, seed=seed)
        return testmodel.make_flux_test_model(dest, variant, seed=seed)

    return write


def _control_writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.flux.testcontrol import write as write_control

        return write_control(name, dest, layout, seed)

    return write


def _redux_writer(dest: Path, layout: str, seed: int = 0) -> Path:
    from engine.families.flux.testreference import write

    return write(dest, layout, seed)


FAMILY = Flux()
