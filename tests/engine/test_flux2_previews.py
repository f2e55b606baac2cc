"""TAEF2, FLUX.2's tiny autoencoder, as a user has it (madebyollin/taef2's ``taef2.safetensors`` or
ComfyUI's ``models/vae_approx/taef2_decoder.safetensors``): recognised from its header in the model
library, decoded with its mid-block pools (which diffusers' AutoencoderTiny has no place for), and
used for the live previews of a FLUX.2 [klein] job; without one the previews are the latent-to-RGB
approximation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.files.probe import inspect_model
from engine.models import ModelLibrary
from engine.testaddons import make_taef2


@pytest.fixture(scope="module")
def klein(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flux2-previews")
    assert main(["make-test-model", str(root / "klein"), "--family", "flux2-klein"]) == 0
    return root / "klein"


def test_taef2_is_recognised_from_its_header_in_either_layout(tmp_path):
    hf = make_taef2(tmp_path / "hf" / "taef2.safetensors")
    comfy = make_taef2(tmp_path / "ComfyUI" / "models" / "vae_approx" / "taef2_decoder.safetensors", layout="comfyui")
    for path in (hf, comfy):
        info = inspect_model(path)
        assert (info.kind, info.family) == ("taesd", "flux2")
        assert info.problem.endswith("not a checkpoint: Easel uses it for live previews")
    library = ModelLibrary([str(tmp_path / "ComfyUI")], include_defaults=False)
    entries = library.scan()
    assert [(e.kind, e.family, e.usable) for e in entries] == [("taesd", "flux2", True)]
    assert library.taesd("flux2").path == str(comfy) and library.taesd("flux") is None

    # taesd.py's flat *encoder* file is no decoder, and is not taken for one
    from safetensors.torch import load_file, save_file

    encoder = {k.split(".", 2)[2]: v for k, v in load_file(hf).items() if k.startswith("encoder.layers.")}
    save_file(encoder, tmp_path / "taef2_encoder.safetensors")
    assert inspect_model(tmp_path / "taef2_encoder.safetensors").kind != "taesd"


def test_the_decoder_is_taesds_with_taef2s_pools(tmp_path):
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file, save_file

    from engine.core import tiny_decoder

    # Without pools it is exactly diffusers' AutoencoderTiny decoder (the same weights, the same pixels).
    torch.manual_seed(0)
    vae = AutoencoderTiny(latent_channels=16, encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, tmp_path / "taef1.safetensors")
    latents = torch.randn(1, 16, 8, 8)
    ours = tiny_decoder.load(str(tmp_path / "taef1.safetensors"), "cpu", torch.float32)
    with torch.inference_mode():
        assert torch.allclose(ours.decode(latents), vae.decode(latents).sample, atol=1e-6)

    # TAEF2's two layouts decode alike, and its pools take part (AutoencoderTiny would drop them).
    hf = make_taef2(tmp_path / "taef2.safetensors")
    comfy = make_taef2(tmp_path / "taef2_decoder.safetensors", layout="comfyui")
    latents = torch.randn(1, 32, 8, 8)
    with torch.inference_mode():
        a = tiny_decoder.load(str(hf), "cpu", torch.float32).decode(latents)
        b = tiny_decoder.load(str(comfy), "cpu", torch.float32).decode(latents)
        no_pools = {k: v for k, v in load_file(hf).items() if ".pool." not in k}
        save_file(no_pools, tmp_path / "no-pools.safetensors")
        c = tiny_decoder.load(str(tmp_path / "no-pools.safetensors"), "cpu", torch.float32).decode(latents)
    assert a.shape == (1, 3, 64, 64) and torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_a_flux2_preview_goes_through_taef2_when_the_library_has_it(klein, tmp_path):
    from engine.api import GenerationRequest
    from engine.engine import Engine

    taef2 = make_taef2(tmp_path / "models" / "vae_approx" / "taef2_decoder.safetensors", layout="comfyui")
    request = GenerationRequest(prompt="a red fox", model=str(klein), steps=3, width=64, height=64, seed=5)

    def previews(library) -> tuple[Engine, list]:
        engine = Engine(device="cpu", library=library, preview_every=1)
        shown = []
        engine.generate(request, on_progress=lambda p: shown.append(p.preview))
        return engine, [np.asarray(p).astype(int) for p in shown if p is not None]

    engine, tiny = previews(ModelLibrary([str(tmp_path / "models")], include_defaults=False))
    assert engine.runner.previews.tiny.folder == str(taef2)
    plain_engine, plain = previews(ModelLibrary([], include_defaults=False))
    assert plain_engine.runner.previews.tiny is False  # none on disk: the latent approximation
    assert len(tiny) == len(plain) == 3 and all(p.shape == (64, 64, 3) for p in tiny + plain)
    assert all(np.abs(t - p).mean() > 1 for t, p in zip(tiny, plain))  # what the user watches is TAEF2's
