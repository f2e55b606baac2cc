"""Add-ons applied to a loaded SD model: LoRAs (A1111 ``<lora:name:weight>``, through the core's
``engine.core.loras`` that every LoRA-taking family shares), textual-inversion embeddings and a
replacement VAE. Files come from ``engine.models`` by name and are checked by header
(``engine.files.probe``) before anything reads their tensors. Everything here runs on the engine
thread.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.core.loading import first_line
from engine.core.loras import Loras
from engine.files.probe import inspect_model

FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family or "an unknown family")


@dataclass
class Addons:
    """The add-ons loaded into one model (lives as long as the model stays loaded)."""

    loras: Loras = field(default_factory=Loras)  # engine.core.loras: what every LoRA-taking family shares
    embeddings: dict[str, str] = field(default_factory=dict)  # token -> file path
    vae_path: str = ""  # "" = the checkpoint's own VAE
    own_vae: object = None

    # ---------------------------------------------------------------------------- embeddings

    @staticmethod
    def own_tokenizers(pipes) -> None:
        """Give ``pipes`` (one model's pipelines, sharing modules) their own copy of any tokenizer
        they share with other models (engine.tokenizers' bundled ones): an embedding adds tokens to
        the tokenizer, and must not leak into the next model loaded."""
        from engine.tokenizers import is_shared, private_copy

        for name in ("tokenizer", "tokenizer_2"):
            shared = next((getattr(p, name) for p in pipes if is_shared(getattr(p, name, None))), None)
            if shared is None:
                continue
            private = private_copy(shared)
            for pipe in pipes:
                if getattr(pipe, name, None) is shared:
                    setattr(pipe, name, private)

    def load_embeddings(self, pipe, model: ModelInfo, wanted: list[ModelInfo], notices: list[str]) -> list[str]:
        """Load the textual-inversion embeddings named in the prompt (once per model); returns their names."""
        from safetensors.torch import load_file

        used: list[str] = []
        for entry in wanted:
            token = entry.name
            if token in self.embeddings:
                used.append(token)
                continue
            if entry.family and model.family and entry.family != model.family:
                notices.append(f"Embedding “{token}” is for {family_name(entry.family)} but the model is "
                               f"{family_name(model.family)}: it was used as plain text.")
                continue
            try:
                tensors = load_file(entry.path)
                if "clip_l" in tensors and "clip_g" in tensors:
                    pipe.load_textual_inversion(tensors["clip_l"], token=token, text_encoder=pipe.text_encoder,
                                                tokenizer=pipe.tokenizer)
                    pipe.load_textual_inversion(tensors["clip_g"], token=token, text_encoder=pipe.text_encoder_2,
                                                tokenizer=pipe.tokenizer_2)
                else:
                    vectors = tensors.get("emb_params")
                    if vectors is None:
                        vectors = next(t for k, t in tensors.items() if k.startswith("string_to_param"))
                    pipe.load_textual_inversion(vectors, token=token)
            except (ValueError, KeyError, RuntimeError, OSError, StopIteration) as exc:
                notices.append(f"Embedding “{token}” could not be loaded ({first_line(exc)}): "
                               "it was used as plain text.")
                continue
            self.embeddings[token] = entry.path
            used.append(token)
        return used

    # ----------------------------------------------------------------------------------- VAE

    def vae_for(self, pipe, model: ModelInfo, vae_path: str, dtype):
        """The VAE module to run: the checkpoint's own for "", else ``vae_path`` loaded once (header
        checked first). Returns (vae, changed)."""
        if vae_path == self.vae_path:
            return pipe.vae, False
        if self.own_vae is None:
            self.own_vae = pipe.vae
        if not vae_path:
            self.vae_path = ""
            return self.own_vae, True
        info = inspect_model(vae_path)
        if info.kind != "vae":
            raise ModelError(Path(vae_path).name, info.problem if info.kind == "unknown" and info.problem
                             else f"this is not a VAE (it is a {info.kind})")
        vae = _load_vae(vae_path, self.own_vae.config, dtype)
        self.vae_path = vae_path
        return vae, True


def _load_vae(path: str, config, dtype):
    import json

    from diffusers import AutoencoderKL

    with tempfile.TemporaryDirectory(prefix="easel-vae-") as tmp:
        cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
        cfg["_class_name"] = "AutoencoderKL"
        Path(tmp, "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        try:
            vae = AutoencoderKL.from_single_file(path, config=tmp, local_files_only=True, torch_dtype=dtype)
        except (ValueError, KeyError, RuntimeError, OSError, TypeError) as exc:
            raise ModelError(Path(path).name, f"could not load this VAE for the model: {first_line(exc)}") from exc
    return vae.eval()

