"""Stable Diffusion 3.5 (Large, Large Turbo, Medium; SD 3.0 Medium too): a flow-matching MMDiT over
a 16-channel VAE, read by three text encoders (CLIP-L, CLIP-G and the optional T5-XXL). Text to
image, img2img and inpaint from diffusers folders, HF cache snapshots, all-in-one single
``.safetensors`` files and ComfyUI's split layout (the transformer, ``.safetensors`` or GGUF, with
``clip_l``, ``clip_g``, the optional ``t5xxl`` and the VAE: ``sd3.split``). Any thread.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from engine.api import ModelError, ModelInfo
from engine.devices import thresholds_for
from engine.families.base import ALL_PARAMETERS, Capabilities, Family, LoadContext, Runner, TestModel, capabilities
from engine.families.sd3 import probe

# Free device memory (GiB) "auto" needs for each preset, in bf16 with T5-XXL (about 9.5 GB itself):
# "fast" holds everything, "balanced" the same with a sliced and tiled VAE, "low" moves
# one model at a time to the GPU (the transformer or T5, whichever is larger, must fit), both in
# fp8 storage there (engine.core.precision: half their bf16 size). Computed from weight sizes.
THRESHOLDS = {
    "large": (("fast", 30.0), ("balanced", 27.0), ("low", 10.0)),  # 8.1B transformer: 16.3 GB (8.2 in fp8)
    "medium": (("fast", 18.0), ("balanced", 16.0), ("low", 6.5)),  # 2.5B: 4.9 GB; T5 in fp8 4.8 GB
    # Without T5 (CLIP-L + CLIP-G are 1.6 GB): "low" then needs room for the transformer alone.
    "large-no-t5": (("fast", 20.0), ("balanced", 19.0), ("low", 10.0)),
    "medium-no-t5": (("fast", 8.5), ("balanced", 7.5), ("low", 4.0)),
}
# For a GGUF transformer (engine.devices.thresholds_for): (bf16 transformer GB, the largest other part in
# "low": T5 in fp8 storage, or CLIP-G without T5).
SIZES = {"large": (16.3, 4.8), "medium": (4.9, 4.8), "large-no-t5": (16.3, 1.4), "medium-no-t5": (4.9, 1.4)}
_NO_SAMPLER = "SD 3.5 runs its own flow-matching schedule (Euler): there is no sampler to choose"
# variant -> (label, defaults)
VARIANTS = {
    "large": ("SD 3.5 Large", {"steps": 28, "guidance_scale": 3.5}),
    "turbo": ("SD 3.5 Large Turbo (4 steps)", {"steps": 4, "guidance_scale": 0.0}),
    "medium": ("SD 3.5 Medium", {"steps": 40, "guidance_scale": 4.5}),
    "sd3-medium": ("SD 3 Medium", {"steps": 28, "guidance_scale": 7.0}),
}


@lru_cache(maxsize=64)
def _file_variant(path: str, mtime: float) -> str:
    from engine.families.sd3.configs import file_shapes, variant_of

    return variant_of(file_shapes(path))


@lru_cache(maxsize=64)
def _t5_present(path: str, mtime: float, name: str, variant: str) -> bool:
    from engine.families.sd3 import configs
    from engine.files.folders import listed, read_json

    root = Path(path)
    if root.is_dir():
        return listed(read_json(root, "model_index.json"), "text_encoder_3")
    found = configs.file_shapes(path)
    if not configs.all_in_one(found):  # a split-layout transformer: T5 is a file of its own, or absent
        from engine.families.sd3.split import has_t5 as split_has_t5

        return split_has_t5(ModelInfo(path, name, "checkpoint", "sd3", "", variant=variant))
    from engine.families.sd3.singlefile import t5_tokenizer_dir

    return configs.has_t5(found) and t5_tokenizer_dir(path) is not None


def has_t5(info: ModelInfo) -> bool:
    """Whether ``info`` runs with its T5 encoder (a folder listing text_encoder_3; a file with T5
    weights, or a split layout with a T5-XXL file, and the T5 tokenizer found). Reads a JSON file or
    headers, once per version."""
    try:
        return _t5_present(info.path, Path(info.path).stat().st_mtime, info.name, info.variant)
    except (OSError, ValueError, ModelError):
        return True


def variant(info: ModelInfo) -> str:
    """The SD 3.5 variant of ``info``: a folder's probe said it; a single file's is read from its header
    (dual attention layers: Medium) and its name (Turbo)."""
    if info.format == "diffusers":
        return info.variant or "large"
    try:
        shape_variant = _file_variant(info.path, Path(info.path).stat().st_mtime)
    except (OSError, ValueError, ModelError):
        shape_variant = "large"
    if shape_variant == "large" and info.variant == "turbo":
        return "turbo"
    return shape_variant


class StableDiffusion3(Family):
    name = "sd3"
    folder_pipelines = probe.PIPELINES

    def examine_folder(self, root, cls, index, result):
        return probe.examine(root, cls, index, result)

    def handles(self, info: ModelInfo) -> bool:
        return info.family == "sd3" and info.kind == "checkpoint"

    def capabilities(self, info: ModelInfo) -> Capabilities:
        kind = variant(info)
        label, defaults = VARIANTS[kind]
        size = ("medium" if kind in ("medium", "sd3-medium") else "large") + ("" if has_t5(info) else "-no-t5")
        common = dict(
            short="SD 3.5", samplers=(), size_step=16, latent_space="sd3", addons=frozenset({"lora"}),
            memory_thresholds=thresholds_for(info, THRESHOLDS[size], *SIZES[size]),
        )
        defaults = {"width": 1024, "height": 1024, **defaults}
        if kind == "turbo":
            return capabilities(
                label, "SD 3.5 Large Turbo",
                parameters=tuple(p for p in ALL_PARAMETERS if p not in ("sampler", "negative_prompt", "guidance_scale")),
                reasons={"sampler": _NO_SAMPLER,
                         "guidance_scale": "SD 3.5 Large Turbo is distilled to run without CFG: it stays at 0",
                         "negative_prompt": "SD 3.5 Large Turbo runs without CFG, so a negative prompt has no effect"},
                defaults=defaults, step_range=(1, 8), **common)
        return capabilities(label, "SD 3.5", parameters=tuple(p for p in ALL_PARAMETERS if p != "sampler"),
                            reasons={"sampler": _NO_SAMPLER}, defaults=defaults, **common)

    def load(self, info: ModelInfo, ctx: LoadContext) -> Runner:
        from engine.families.sd3 import runner

        return runner.load(info, self.capabilities(info), ctx)

    def family_label(self, family: str) -> str | None:
        return "SD 3.5" if family == "sd3" else None

    def test_models(self) -> tuple[TestModel, ...]:
        from engine.families.sd3.testmodel import TEST_MODELS

        return tuple(TestModel(name, ("diffusers", "single-file", "comfyui", "gguf"), _writer(name), what)
                     for name, (_key, what, _t5) in TEST_MODELS.items())


def _writer(name: str):
    def write(dest: Path, layout: str, seed: int = 0) -> Path:
        from engine.families.sd3.testmodel import make_sd3_test_model

        return make_sd3_test_model(dest, name, layout, seed)

    return write


FAMILY = StableDiffusion3()
