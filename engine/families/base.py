"""The two interfaces every model family implements: ``Family`` (what the family is and can do) and
``Runner`` (one loaded model that runs jobs).

A family declares its capabilities (modes, the request parameters it takes, samplers, add-ons,
sizes, defaults, memory thresholds, preview latent space); the core (``engine.core``) and the
callers (the CLI, the window) ask those and never compare family names. A family module registers
itself with one line in ``engine.families.REGISTRY``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.api import SAMPLERS, InvalidRequest, Mode, ModelInfo, Result, RuntimeSettings
from engine.core.prompt_cache import PromptCache

if TYPE_CHECKING:
    from engine.core.job import Job

# The request fields a family may take; a UI disables the ones a model's capabilities leave out.
ALL_PARAMETERS = ("negative_prompt", "steps", "guidance_scale", "sampler", "width", "height", "strength")
PARAMETER_WORDS = {
    "negative_prompt": "a negative prompt", "steps": "a step count", "guidance_scale": "a CFG scale",
    "sampler": "a sampler", "width": "a free image size", "height": "a free image size", "strength": "a strength",
}
ALL_MODES = (Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT)


class ModeRefused(InvalidRequest):
    """A mode the model does not run; ``str()`` is the plain line alone (it says what to do instead)."""

    def __init__(self, message: str):
        super().__init__("mode", message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Capabilities:
    """What one model can do, as its family declares it. Pure data: any thread.

    ``label``: a few words for the model ("SD 1.x", "SDXL Turbo (1–4 steps)"); ``group``: what a
    tooltip calls models like it ("SD 1.x", "Turbo models"); ``short``: the family's name in a
    table column ("SD 1.x", "aMUSEd", "GAN"). ``refused``: mode -> the plain line
    saying why the model does not run it (modes not in ``modes``). ``reasons``: request parameter ->
    why the model does not take it. ``samplers``: the samplers it takes (empty: it has its own
    schedule and none is recorded). ``addons``: among "lora", "embedding", "vae", "clip_skip".
    ``sizes``: the only sizes it makes (None: any size on ``size_step``). ``role``: "generator",
    "variations" (needs an image: Stable unCLIP) or "upscaler" (``upscale_kind`` "diffusion"/"gan").
    ``control_kinds``: the kinds of control input (ControlNet) it takes; empty: none.
    ``references``: how many reference images (``GenerationRequest.references``) it takes: an IP-Adapter's
    (SD 1.5 / SDXL; engine.core.reference) or an instruction editor's further input images (Qwen-Image-Edit Plus).
    ``instruction_edit``: img2img / inpaint edit the input by the prompt's instruction (Kontext, Qwen-Image-Edit).
    ``regions``: whether it takes regions (``GenerationRequest.regions``: areas with their own prompts), applied
    by attention masking in its denoiser (engine.core.regions: UNet cross-attention, MM-DiT joint attention).
    """

    label: str
    group: str
    short: str = ""
    modes: tuple[Mode, ...] = ALL_MODES
    refused: dict = field(default_factory=dict)
    parameters: tuple[str, ...] = ALL_PARAMETERS
    reasons: dict = field(default_factory=dict)
    samplers: tuple[str, ...] = SAMPLERS
    addons: frozenset = frozenset()
    prompt_weighting: bool = False
    defaults: dict = field(default_factory=dict)
    step_range: tuple[int, int] | None = None
    sizes: tuple[tuple[int, int], ...] | None = None
    size_step: int = 8
    memory_thresholds: tuple = ()
    latent_space: str = "sd"
    role: str = "generator"
    upscale_kind: str = ""
    speeds: bool = False  # whether Fast / Draft (engine.core.speed) apply to its denoiser
    strength_shortens: bool = True  # img2img / inpaint run steps x strength steps (unCLIP: a noise level)
    control_kinds: tuple[str, ...] = ()  # the control inputs (engine.api.CONTROL_KINDS) it takes; engine.core.control
    # An instruction editor (FLUX.1 Kontext, Qwen-Image-Edit): its img2img / inpaint prompt says what to change
    # in the input image ("make the sky stormy"), the window's "Edit with words" and ``easel edit``.
    instruction_edit: bool = False
    references: int = 0  # how many reference images (GenerationRequest.references) it takes; 0: none
    regions: bool = False  # whether it takes regions (GenerationRequest.regions); engine.core.regions
    # The hires fix's "Latent" upscalers: its img2img pass can start from the first pass's enlarged latents
    # (the runner takes ``Job.init_latents`` and fills ``Job.latents``; engine.core.hires).
    latent_upscale: bool = False

    def refusal(self, mode: Mode) -> str:
        """Why this model cannot run ``mode`` ("" when it can)."""
        if mode in self.modes:
            return ""
        return self.refused.get(mode, f"{self.label} does not run {mode.value}")

    def check(self, mode: Mode) -> None:
        """Raise ModeRefused (an InvalidRequest: one plain line) when the model cannot run ``mode``."""
        if (why := self.refusal(mode)):
            raise ModeRefused(why)

    def check_request(self, request) -> None:
        """``check`` the request's mode, and refuse (one plain line) an img2img / inpaint whose steps x
        strength rounds down to no denoising step at all (the pipelines would fail inside)."""
        self.check(request.mode)
        if len(getattr(request, "references", ())) > self.references:
            raise InvalidRequest("references", f"{self.label} takes no reference images" if not self.references else
                                 f"{self.label} takes at most {self.references} reference image"
                                 f"{'s' if self.references != 1 else ''} at once")
        if getattr(request, "regions", ()) and not self.regions:
            raise InvalidRequest("regions", f"{self.label} takes no regions (areas with their own prompts): "
                                 "leave them out, or use a model that takes them (SD 1.x / 2.x, SDXL, FLUX.1)")
        if (self.strength_shortens and request.mode in (Mode.IMG2IMG, Mode.INPAINT)
                and int(request.steps * request.strength) < 1):
            least = math.ceil(1 / request.strength - 1e-9)
            raise InvalidRequest("steps", f"{request.steps} step{'s' if request.steps != 1 else ''} at strength "
                                 f"{request.strength:g} would run no denoising step: use at least {least} steps "
                                 "or a higher strength")

    @property
    def native(self) -> tuple[int, int]:
        return (self.defaults.get("width", 512), self.defaults.get("height", 512))


def capabilities(label: str, group: str, *, parameters=ALL_PARAMETERS, reasons=None, **rest) -> Capabilities:
    """Capabilities with the default wording for the parameters left out ("aMUSEd does not use a sampler")."""
    why = {p: f"{group} {'do' if group.endswith('s') else 'does'} not use {PARAMETER_WORDS[p]}"
           for p in ALL_PARAMETERS if p not in parameters}
    why.update(reasons or {})
    if "sampler" not in parameters:
        rest.setdefault("samplers", ())
    rest.setdefault("short", group)
    return Capabilities(label=label, group=group, parameters=tuple(parameters), reasons=why, **rest)


@dataclass(frozen=True)
class TestModel:
    """A tiny random-weight model a family can write (``easel make-test-model``): ``name``, the
    layouts it can be written in ("diffusers", "single-file", "comfyui", "gguf"), and
    ``write(dest: Path, layout: str, seed: int = 0) -> Path`` (the path to pick as the model)."""

    name: str
    layouts: tuple[str, ...]
    write: Callable[..., Path]
    description: str = ""
    contract: bool = False  # run through the contract suite too (besides the family's first test model)


@dataclass
class LoadContext:
    """What a family needs from the Engine to load a model: device, dtype, the model library (add-ons,
    preview decoders), the remembered memory rungs, the requested preset. Engine thread."""

    device: str
    dtype: object
    library: object = None
    rungs: object = None
    preset: str = "auto"
    preview_every: int = 2
    hasher: Callable[[str], str] | None = None
    state_dir: object = None  # the data folder (the compiler cache of Fast lives there)


class Runner(abc.ABC):
    """One loaded model. Every method runs on the engine thread.

    ``generate(job)`` runs one request (seed resolved) with the core's guarantees: a Progress event
    per step, cancel within one step (``Cancelled``, no image), the memory ladder, the decode guard,
    previews, and the request as run in the Result. ``park()`` moves the model to system RAM (the
    Engine keeps recent models there), ``unpark(preset)`` brings it back, ``close()`` frees it.
    """

    info: ModelInfo
    caps: Capabilities
    load_seconds: float = 0.0

    def __init__(self, info: ModelInfo, caps: Capabilities, ctx: LoadContext, load_seconds: float, *,
                 vae_tiling: bool = True):
        """What every runner keeps: the model, its capabilities, its Placement (presets, ladder and the
        remembered rung; ``vae_tiling`` False for runners that tile the image themselves). A subclass
        sets its pipelines, then calls ``self.placement.place_new(self.pipelines(), ctx.preset)``."""
        from engine.core.placement import Placement

        self.info = info
        self.caps = caps
        self.load_seconds = load_seconds
        self.placement = Placement(ctx.device, ctx.dtype, caps.memory_thresholds, model_path=info.path,
                                   rungs=ctx.rungs, vae_tiling=vae_tiling)
        # The last prompt encoding (engine.core.prompt_cache): unchanged text is not encoded again.
        self.prompt_cache = PromptCache()

    @property
    def settings(self) -> RuntimeSettings | None:
        """The device and memory settings the model sits on now."""
        return self.placement.settings

    @abc.abstractmethod
    def generate(self, job: Job) -> Result:
        ...

    @abc.abstractmethod
    def pipelines(self) -> list:
        """The loaded pipelines (or modules), for placement, RAM parking and memory accounting."""

    def park(self) -> None:
        self.prompt_cache.clear()
        self.placement.park(self.pipelines())

    def unpark(self, preset: str) -> None:
        self.placement.unpark(self.pipelines(), preset)

    def close(self) -> None:
        from engine.core.placement import free

        self.prompt_cache.clear()
        free(self.pipelines(), self.placement.device)

    def nbytes(self) -> int:
        """Bytes of weights the model holds (what parking it in RAM costs)."""
        total = 0
        for pipe in self.pipelines():
            modules = getattr(pipe, "components", None)
            for module in (modules.values() if isinstance(modules, dict) else [pipe]):
                if hasattr(module, "parameters"):
                    total += sum(p.numel() * p.element_size() for p in module.parameters())
        return total


class Family(abc.ABC):
    """A kind of model. Subclasses set ``name`` (the registry key) and implement the methods; they
    hold no state (one instance serves every model of the family). Any thread unless said."""

    name: str = ""
    # The diffusers pipeline classes (model_index ``_class_name``) whose folders this family examines,
    # and the probe that does: ``probe(root, cls, index, result) -> (ModelInfo, error type | None)``.
    folder_pipelines: tuple[str, ...] = ()
    # What the family's instruction editors are called, for the line that tells a user which models
    # edit by instruction ("FLUX.1 Kontext"); empty when it has none.
    instruction_editors: tuple[str, ...] = ()

    def examine_folder(self, root: Path, cls: str, index: dict, result):
        raise NotImplementedError

    @abc.abstractmethod
    def handles(self, info: ModelInfo) -> bool:
        """Whether this family runs the model ``info`` (decided from its headers, engine.files)."""

    @abc.abstractmethod
    def capabilities(self, info: ModelInfo) -> Capabilities:
        ...

    @abc.abstractmethod
    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        """Load ``info`` (safetensors only, offline) and place it. Engine thread; raises ModelError."""

    def test_models(self) -> tuple[TestModel, ...]:
        return ()

    def upscale_request(self, image, model_path: str, info: ModelInfo, stored=None, seed: int | None = None):
        """The GenerationRequest that upscales ``image`` with this diffusion upscaler (families whose
        capabilities say ``upscale_kind == "diffusion"``)."""
        raise NotImplementedError(f"{self.name} is not a diffusion upscaler")

    def inpaint_partner(self, info: ModelInfo, models) -> ModelInfo | None:
        """A model among ``models`` (the library's ModelInfos) that inpaints and outpaints better than
        ``info`` and stands in for it there (FLUX.1 Fill for FLUX.1 [dev] / [schnell]); None when none does."""
        return None

    def family_label(self, family: str) -> str | None:
        """The name of the model family ``family`` (a ModelInfo.family value) if it is this one's, for
        files it does not run itself (a LoRA "sd1" -> "SD 1.x"); None otherwise."""
        return None
