"""A tiny random-weight FLUX.1 Redux model for the FLUX.1 test models (``redux-flux1``): the real
``ReduxImageEncoder`` (SigLIP features -> T5 prompt tokens, as wide as the tiny test T5) and a tiny
transformers ``SiglipVisionModel`` it reads pictures with. Written as Redux's file with its encoder
in an ``image_encoder/`` folder beside it (layout "single-file"), or into a ComfyUI install as
``models/style_models/flux1-redux-test.safetensors`` with the encoder as one file in
``models/clip_vision`` (layout "comfyui"). Calling thread (builds torch modules).
"""

from __future__ import annotations

from pathlib import Path

NAME = "redux-flux1"
SIGLIP_WIDTH = 16


def build(seed: int = 0):
    """(ReduxImageEncoder, SiglipVisionModel), tiny and seeded."""
    import torch
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from engine.families.flux.testmodel import WIDTH
    from engine.testmodels import randomize

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100 + 17)
        encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=SIGLIP_WIDTH, intermediate_size=32, num_hidden_layers=1,
                                                       num_attention_heads=1, image_size=56, patch_size=14))
        redux = ReduxImageEncoder(redux_dim=SIGLIP_WIDTH, txt_in_features=WIDTH)
    generator = torch.Generator().manual_seed(seed + 2468)
    randomize(encoder, generator, full=False)
    with torch.no_grad():  # tokens clearly away from zero, so a reference shows in the tiny model
        for param in redux.parameters():
            param.copy_(torch.empty(param.shape).normal_(0.0, 3.0, generator=generator))
    return redux.eval(), encoder.eval()


def _vision_name(key: str) -> str:
    return key if key.startswith("vision_model.") else "vision_model." + key


def write(dest: Path, layout: str, seed: int = 0) -> Path:
    """Write the tiny Redux model (and its SigLIP encoder) under ``dest``; returns the Redux file."""
    from engine.core.loading import quiet_libraries
    from engine.testmodels import save_safetensors

    quiet_libraries()  # no "Writing model shards" bar on the terminal
    redux, encoder = build(seed)
    dest = Path(dest)
    if layout == "comfyui":
        target = dest / "models" / "style_models" / "flux1-redux-test.safetensors"
        (dest / "models" / "clip_vision").mkdir(parents=True, exist_ok=True)
        save_safetensors(dest / "models" / "clip_vision" / "sigclip_vision_test.safetensors",  # ComfyUI's names
                         {_vision_name(k): v.contiguous() for k, v in encoder.state_dict().items()})
    else:
        target = dest / "flux1-redux-test.safetensors"
        encoder.save_pretrained(dest / "image_encoder", safe_serialization=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(target, {k: v.contiguous() for k, v in redux.state_dict().items()})
    return target
