"""FLUX.2 [klein] 4B and 9B (Black Forest Labs): a flow-matching image transformer over 2x2-patchified
32-channel latents (128 channels a token), conditioned on three stacked hidden states of a Qwen3
text encoder (Qwen3-4B for 4B, Qwen3-8B for 9B). One model generates and edits: text to image,
img2img as an edit by instruction (the input image is the reference the prompt edits; Klein takes
no strength there), and inpainting (Flux2KleinInpaintPipeline). From diffusers folders, Hugging Face
cache snapshots, ComfyUI's split layout and GGUF transformers.

The distilled models run 4 steps without classifier-free guidance (no CFG scale, no negative
prompt); the base models about 50 steps with CFG. Told apart by model_index.json's ``is_distilled``
(a split-layout file: by its name, ``flux-2-klein-base-*``). No sampler: flow-matching Euler is part
of the model. Any thread.

FLUX.2 [dev] (variant "dev") is the 32B guidance-distilled model over the same VAE, reading three
hidden states of Mistral 3 Small (24B): Flux2Pipeline, about 28 steps at guidance 4 (the guidance is
an input of the model, not CFG: no negative prompt). It generates from text and edits by instruction
with up to ``MAX_REFERENCES`` pictures (the input image and the request's reference images are all
its ``image=`` list); diffusers has no inpainting pipeline for it, so it declares none.
"""

from __future__ import annotations

from pathlib import Path

from engine.api import MAX_REFERENCES, Mode, ModelInfo
from engine.devices import thresholds_for
from engine.families.base import Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.flux2 import probe

# Free device memory (GiB) "auto" needs for each preset, computed from the bf16 weight sizes (not
# measured): 4B = transformer 7.7 GB + Qwen3-4B 8.0 GB + VAE 0.2 GB; 9B = transformer 18.1 GB +
# Qwen3-8B 16.4 GB + VAE 0.2 GB. "fast" keeps all of it on the GPU (plus about 2 GB of activations
# and decode at 1024 px); "balanced" the same with the VAE sliced and tiled; "low" moves one model
# onto the GPU at a time (the largest, plus activations; the transformer in fp8 storage there,
# engine.core.precision: 3.9 / 9.1 GB, so the Qwen3 encoder is the largest); below that "minimal"
# streams the layers.
# [dev]: transformer 64.4 GB (32.2 in fp8) + Mistral 3 Small 48.0 GB (24.0 in fp8) + VAE 0.2 GB; "low"
# holds the fp8 transformer (the largest part then) plus activations for 1024 px with references.
THRESHOLDS = {"4b": (("fast", 18.0), ("balanced", 17.0), ("low", 10.0)),
              "9b": (("fast", 37.0), ("balanced", 36.0), ("low", 18.5)),
              probe.DEV: (("fast", 116.0), ("balanced", 115.0), ("low", 36.0))}
# For a GGUF transformer (engine.devices.thresholds_for): (bf16 transformer GB, the largest other part in "low").
SIZES = {"4b": (7.7, 8.0), "9b": (18.1, 16.4), probe.DEV: (64.4, 24.0)}
NO_SAMPLER = "{label} uses its own flow-matching schedule: there is no sampler to choose"
NO_CFG = "{label} is step-distilled to run without CFG: the CFG scale stays at 1"
NO_NEGATIVE = "{label} runs without CFG (it is step-distilled), so a negative prompt has no effect"
DEV_LABEL = "FLUX.2 [dev]"
DEV_NO_NEGATIVE = ("FLUX.2 [dev] is guidance-distilled (the guidance is an input of the model, not CFG), so a "
                   "negative prompt has no effect")
DEV_NO_STRENGTH = ("FLUX.2 [dev] edits the whole image by the instruction (the image is its reference): "
                   "it takes no strength")
DEV_NO_INPAINT = ("FLUX.2 [dev] has no inpainting pipeline: edit the whole image by instruction, or inpaint "
                  "with FLUX.2 [klein] or FLUX.1 Fill")
# name -> (variant, what); the variant is the ModelInfo's ("distilled", "base", "dev")
TEST_MODELS = {"flux2-klein": ("distilled", "FLUX.2 [klein] (4-step distilled, edits by instruction)"),
               "flux2-klein-base": ("base", "FLUX.2 [klein] Base (with CFG)"),
               "flux2-dev": (probe.DEV, "FLUX.2 [dev] (guidance-distilled, edits with reference images)")}
LAYOUTS = ("diffusers", "comfyui", "gguf")
# BFL: Klein 4B / 9B take up to 4 input pictures (diffusers' pipeline sets no limit): that many reference
# images for a new image; an edit's input image is one of the four (the runner says so in one line).
REFERENCES = 4


def label(variant: str) -> str:
    """"FLUX.2 [klein] 4B", "FLUX.2 [klein] Base 9B" (BFL's names), "FLUX.2 [klein]" for a size not told;
    "FLUX.2 [dev]"."""
    if probe.is_dev(variant):
        return DEV_LABEL
    size = probe.size_of(variant)
    return "FLUX.2 [klein]" + ("" if probe.is_distilled(variant) else " Base") + (f" {size.upper()}" if size else "")


class Flux2(Family):
    name = "flux2"
    instruction_editors = ("FLUX.2 [klein]", DEV_LABEL)
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == probe.FAMILY_NAME and info.kind == "checkpoint"

    def family_label(self, family: str) -> str | None:
        return "FLUX.2" if family == probe.FAMILY_NAME else None

    def capabilities(self, info: ModelInfo) -> Capabilities:
        variant = info.variant or "distilled"
        if probe.is_dev(variant):
            return _dev_capabilities(info)
        name = label(variant)
        reasons = {"sampler": NO_SAMPLER.format(label=name)}
        # BFL's model cards: distilled 4 steps at guidance 1 (no CFG); base 50 steps at guidance 4.
        if probe.is_distilled(variant):
            parameters = ("steps", "width", "height", "strength")
            reasons.update(guidance_scale=NO_CFG.format(label=name), negative_prompt=NO_NEGATIVE.format(label=name))
            defaults = {"width": 1024, "height": 1024, "steps": 4, "guidance_scale": 1.0}
            step_range = (1, 16)
        else:
            parameters = ("negative_prompt", "steps", "guidance_scale", "width", "height", "strength")
            defaults = {"width": 1024, "height": 1024, "steps": 50, "guidance_scale": 4.0}
            step_range = None
        return capabilities(name, "FLUX.2 [klein]", short="FLUX.2", modes=(Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT),
                            parameters=parameters, reasons=reasons, defaults=defaults, step_range=step_range,
                            size_step=16, memory_thresholds=_thresholds(info, probe.size_of(variant)),
                            latent_space="flux2", instruction_edit=True, addons=frozenset({"lora"}),
                            references=REFERENCES)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.flux2 import runner

        return runner.load(info, self.capabilities(info), ctx)

    def test_models(self) -> tuple[TestModel, ...]:
        # [dev] runs through the contract suite too: it is another pipeline, text encoder and mode set.
        return tuple(TestModel(name, LAYOUTS, _writer(variant), what, contract=probe.is_dev(variant))
                     for name, (variant, what) in TEST_MODELS.items())


def _thresholds(info: ModelInfo, size: str):
    size = size if size in THRESHOLDS else "9b"  # a [klein] of a size not told: the larger one's
    return thresholds_for(info, THRESHOLDS[size], *SIZES[size])


def _dev_capabilities(info: ModelInfo) -> Capabilities:
    """FLUX.2 [dev]: BFL's model card and the pipeline's guidance 4 (diffusers' default; 28 steps is
    BFL's quicker recommendation beside diffusers' 50), 1024 px native."""
    return capabilities(DEV_LABEL, DEV_LABEL, short="FLUX.2", modes=(Mode.TXT2IMG, Mode.IMG2IMG),
                        refused={Mode.INPAINT: DEV_NO_INPAINT},
                        parameters=("steps", "guidance_scale", "width", "height"),
                        reasons={"sampler": NO_SAMPLER.format(label=DEV_LABEL), "negative_prompt": DEV_NO_NEGATIVE,
                                 "strength": DEV_NO_STRENGTH},
                        defaults={"width": 1024, "height": 1024, "steps": 28, "guidance_scale": 4.0},
                        size_step=16, memory_thresholds=_thresholds(info, probe.DEV), latent_space="flux2",
                        instruction_edit=True, references=MAX_REFERENCES, strength_shortens=False,
                        addons=frozenset({"lora"}))


def _writer(variant: str):
    distilled, dev = probe.is_distilled(variant), probe.is_dev(variant)

    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.flux2 import testmodel

        if layout == "comfyui":  # DEST is the ComfyUI install; returns the transformer file to pick
            return testmodel.make_flux2_comfyui_test_model(dest, distilled, seed=seed, dev=dev)
        if layout == "gguf":  # the same, with the transformer as a Q8_0 GGUF file
            return testmodel.make_flux2_gguf_test_model(dest, distilled, seed=seed, dev=dev)
        return testmodel.make_flux2_test_model(dest, distilled, seed=seed, dev=dev)

    return write


FAMILY = Flux2()
