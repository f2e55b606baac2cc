"""LoRAs named in a prompt (A1111 ``<lora:name:weight>``), for every family that declares the "lora"
add-on: SD 1.x / 2.x / SDXL, FLUX.1, SD 3.5, Z-Image, Qwen-Image.

A LoRA goes through diffusers' ``load_lora_weights`` (peft), which reads the layouts users have and
converts most of them itself (kohya ``lora_unet_*``, diffusers / PEFT, XLabs and BFL / ComfyUI FLUX
files, ComfyUI ``diffusion_model.`` Z-Image and Qwen-Image files). Each file is loaded once per
model and switched on and off with ``set_adapters``, so the same LoRA at another weight costs
nothing and a prompt without LoRAs gives the model's own pixels again. The files come from the model
library by name, already classified by header (``engine.files``): a LoRA of another family is left
out with a notice, never applied. Everything here runs on the engine thread.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.api import ModelInfo
from engine.core.loading import first_line
from engine.files.probe import sha256_file
from engine.prompts import LoraRef

log = logging.getLogger(__name__)

# What a LoRA that does not fit raises inside diffusers / peft (its converters assert full-size shapes).
LOAD_ERRORS = (ValueError, KeyError, RuntimeError, OSError, TypeError, AttributeError, IndexError, AssertionError)


_NO_FIT = ("LoRA “{name}” fits no layer of this model (its layers are named for another model or tool): "
           "it was left out.")


@dataclass
class AppliedLora:
    name: str
    path: str
    weight: float
    hash12: str  # first 12 hex digits of the file's SHA-256, as A1111 writes in "Lora hashes"


def wanted(library, refs: tuple[LoraRef, ...], family: str) -> list[tuple[LoraRef, ModelInfo | None]]:
    """The library entry of each LoRA a prompt names (None where the library has none), preferring
    one of the model's ``family`` when names repeat."""
    out = []
    for ref in refs:
        entry = library.find("lora", ref.name, family) if library is not None else None
        out.append((ref, entry.info if entry else None))
    return out


def params(applied: list[AppliedLora]) -> list[tuple[str, str]]:
    """The A1111 metadata pair of the LoRAs that ran (``Lora hashes: "name: 0123456789ab, …"``)."""
    return [("Lora hashes", ", ".join(f"{a.name}: {a.hash12}" for a in applied))] if applied else []


@dataclass
class Loras:
    """The LoRAs loaded into one model (lives as long as the model stays loaded)."""

    loaded: dict[str, str] = field(default_factory=dict)  # file path -> peft adapter name
    hashes: dict[str, str] = field(default_factory=dict)  # file path -> sha256
    enabled: bool = False

    def apply(self, pipe, model: ModelInfo, model_label: str, wanted: list[tuple[LoraRef, ModelInfo | None]],
              notices: list[str], *, hasher=None, family_label: Callable[[ModelInfo], str] | None = None,
              source: Callable[[str], object] | None = None) -> list[AppliedLora]:
        """Switch ``pipe``'s LoRAs to exactly ``wanted`` (name and weight, library entry or None).

        A LoRA that is missing, not a LoRA, of another model family (``family_label`` names it), or
        that fits no layer of the model is left out with a notice. ``hasher(path) -> sha256`` may serve
        cached hashes; ``source(path)`` is what ``load_lora_weights`` is given for a file (default: the
        path; a family may rename a layout diffusers does not know). ``pipe`` is any of the model's pipelines (they share the modules the adapters
        go on). Returns what was applied, in order.
        """
        applied: list[AppliedLora] = []
        for ref, entry in wanted:
            if entry is None:
                notices.append(f"No LoRA named “{ref.name}” in the model folders: it was left out.")
                continue
            if entry.kind != "lora":
                notices.append(f"“{ref.name}” is not a LoRA ({entry.problem or entry.kind}): it was left out.")
                continue
            if entry.family and model.family and entry.family != model.family:
                theirs = (family_label(entry) if family_label else "") or entry.family
                notices.append(f"LoRA “{ref.name}” is for {theirs} but the model is {model_label}: it was left out.")
                continue
            adapter = self.loaded.get(entry.path)
            if adapter is None:
                adapter = self._load(pipe, ref, entry, notices, source)
                if adapter is None:
                    continue
            if entry.path not in self.hashes:
                self.hashes[entry.path] = (hasher or sha256_file)(entry.path)
            applied.append(AppliedLora(ref.name, entry.path, ref.weight, self.hashes[entry.path][:12]))

        if applied:
            pipe.enable_lora()
            pipe.set_adapters([self.loaded[a.path] for a in applied], adapter_weights=[a.weight for a in applied])
            self.enabled = True
        elif self.enabled:
            pipe.disable_lora()
            self.enabled = False
        return applied

    def _load(self, pipe, ref: LoraRef, entry: ModelInfo, notices: list[str], source) -> str | None:
        """Load ``entry`` as a new adapter; its name, or None (with a notice) when it does not fit."""
        adapter = f"lora{len(self.loaded)}"
        try:
            with warnings.catch_warnings():  # peft's "multiple adapters" warning: several are the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                pipe.load_lora_weights(source(entry.path) if source else entry.path, adapter_name=adapter)
        except LOAD_ERRORS as exc:
            log.warning("LoRA %s failed to load: %s", entry.path, exc)
            drop_adapter(pipe, adapter)
            notices.append(_NO_FIT.format(name=ref.name) if "not found in the base model" in str(exc) else
                           f"LoRA “{ref.name}” could not be applied to this model ({first_line(exc)}): it was left out.")
            return None
        if not any(adapter in names for names in pipe.get_list_adapters().values()):
            # diffusers only warns when none of the file's layer names is one of this model's.
            notices.append(_NO_FIT.format(name=ref.name))
            return None
        self.loaded[entry.path] = adapter
        return adapter


def drop_adapter(pipe, adapter: str) -> None:
    """Remove a half-loaded adapter (a failed ``load_lora_weights`` may leave layers behind)."""
    try:
        pipe.delete_adapters(adapter)
    except LOAD_ERRORS:
        pass
