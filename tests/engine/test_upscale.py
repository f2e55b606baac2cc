"""GAN upscalers: loaded safely (safetensors, weights-only .pth), the right size, tiled = untiled,
bounded memory, cancellable, and the CLI writes the source's settings plus how it was upscaled."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import Cancelled, ModelError, UnsafeModelFile
from engine.cli import main
from engine.upscale import inspect_upscaler, load_upscaler, upscale_image

ROOT = Path(__file__).resolve().parents[2]


def make_esrgan(path: Path, filters: int = 8, blocks: int = 1, scale: int = 4, seed: int = 0) -> Path:
    """A random-weight ESRGAN (RRDB) upscaler, spandrel's own architecture class, saved as given."""
    from engine.testmodels import save_safetensors
    from engine.upscale import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    state = ESRGAN(num_filters=filters, num_blocks=blocks, scale=scale).state_dict()
    if path.suffix == ".pth":
        torch.save(state, path)
    else:
        save_safetensors(path, state)
    return path


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory) -> Path:
    return make_esrgan(tmp_path_factory.mktemp("upscalers") / "tiny-esrgan-x4.safetensors")


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((h // 8, w // 8, 3)) * 255).astype("uint8"))
    return small.resize((w, h), Image.Resampling.BICUBIC)


def test_upscaler_files_are_recognised_for_upscale_not_generation(esrgan):
    info = inspect_upscaler(str(esrgan))
    assert info.upscaler and info.problem is None
    assert not info.usable  # not offered as a generator
    with pytest.raises(ModelError, match="use it with Upscale"):
        from engine.files.probe import check_model

        check_model(str(esrgan))


def test_output_is_four_times_the_size_and_alpha_survives(esrgan):
    up = load_upscaler(str(esrgan))
    assert (up.architecture, up.scale) == ("ESRGAN", 4)
    src = noise_image(72, 48).convert("RGBA")
    out = upscale_image(up, src, tile=0).image
    assert out.size == (288, 192) and out.mode == "RGBA"
    assert np.asarray(out)[..., :3].std() > 1  # an image, not a flat fill


def test_tiled_matches_a_single_pass_in_the_interior(esrgan):
    up = load_upscaler(str(esrgan))
    src = noise_image(200, 144)
    whole = np.asarray(upscale_image(up, src, tile=0).image).astype(int)
    tiled_result = upscale_image(up, src, tile=64, overlap=16)
    assert tiled_result.tile == 64
    tiled = np.asarray(tiled_result.image).astype(int)
    inner = np.abs(whole - tiled)[16:-16, 16:-16]
    assert inner.mean() < 0.5 and inner.max() <= 12


def test_pth_loads_through_the_weights_only_reader(tmp_path, esrgan):
    pth = make_esrgan(tmp_path / "tiny.pth")
    a = upscale_image(load_upscaler(str(pth)), noise_image(40, 40), tile=0).image
    b = upscale_image(load_upscaler(str(esrgan)), noise_image(40, 40), tile=0).image
    assert np.array_equal(np.asarray(a), np.asarray(b))  # same seed, same weights


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling would create the marker file


def test_a_pth_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"model.0.weight": torch.zeros(1), "payload": _Payload(str(marker))}, evil)
    with pytest.raises(UnsafeModelFile, match="not opened"):
        load_upscaler(str(evil))
    assert not marker.exists()
    evil_plain = tmp_path / "plain.pth"
    evil_plain.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=2))
    with pytest.raises(UnsafeModelFile):
        load_upscaler(str(evil_plain))
    assert not marker.exists()


def test_tiles_are_even_cover_the_image_and_waste_less_than_an_edge_aligned_grid():
    from engine.core.tiles import even_tiles

    def tile_grid(length, tile, overlap):  # the edge-aligned grid: the last tile pushed back to the edge
        return [0] if tile >= length else [*range(0, length - tile, tile - overlap), length - tile]

    for length, tile, overlap in ((2048, 512, 32), (1000, 512, 32), (513, 512, 32), (200, 64, 16), (100, 512, 32)):
        size, starts = even_tiles(length, tile, overlap)
        assert size <= tile and starts[0] == 0 and starts[-1] + size == length
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap
        assert size * len(starts) <= min(tile, length) * len(tile_grid(length, tile, overlap))
    size, starts = even_tiles(2048, 512, 32)
    assert (size * len(starts)) ** 2 / 2048**2 < 1.15  # 2048 px in 512 px tiles: 13% more work, not 56%


def test_cancel_stops_within_one_tile(esrgan):
    from engine.api import UpscaleRequest
    from engine.engine import Engine

    cancel = threading.Event()
    seen = []

    def on_progress(p):
        seen.append(p.step)
        cancel.set()

    with pytest.raises(Cancelled):
        Engine(device="cpu").upscale(UpscaleRequest(model=str(esrgan), image=noise_image(160, 160), tile=64, overlap=8),
                                     on_progress, cancel)
    assert seen == [1]


def test_tiled_upscale_of_a_large_image_stays_within_a_memory_bound(tmp_path):
    """512x512 -> 2048x2048 with a 16-filter model: one full-resolution feature map alone is 268 MB;
    tiled, the process may grow by little more than the 12 MB output."""
    model = make_esrgan(tmp_path / "m16.safetensors", filters=16)
    script = f"""
import resource, numpy as np
from PIL import Image
from engine.upscale import load_upscaler, upscale_image
up = load_upscaler({str(model)!r})
img = Image.fromarray((np.random.default_rng(0).random((512, 512, 3)) * 255).astype('uint8'))
upscale_image(up, img.resize((64, 64)), tile=0)  # warm up allocators on a small image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = upscale_image(up, img, tile=128, overlap=16).image
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(out.size[0], out.size[1], (after - before) // 1024)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    w, h, grown_mb = map(int, done.stdout.split()[-3:])
    assert (w, h) == (2048, 2048)
    assert grown_mb < 150, f"tiled upscale grew the process by {grown_mb} MB"


def test_cli_upscale_keeps_the_source_settings_and_records_the_upscale(tmp_path, capsys, esrgan, tiny_models):
    src = tmp_path / "src.png"
    assert main(["generate", "--model", str(tiny_models.get()), "--prompt", "a lighthouse", "--steps", "2",
                 "--seed", "5", "--width", "64", "--height", "64", "--out", str(src)]) == 0
    out = tmp_path / "big.png"
    code = main(["upscale", str(src), "--model", str(esrgan), "--tile", "32", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with Image.open(out) as im:
        assert im.size == (256, 256)
        texts = dict(im.text)
    assert "Postprocess upscale by: 4" in texts["postprocessing"]
    recipe = json.loads(texts["easel_upscale"])
    assert (recipe["scale"], recipe["tile"], recipe["model_name"]) == (4, 32, "tiny-esrgan-x4")
    from engine.metadata import read_metadata

    meta = read_metadata(out)
    assert meta.fields["prompt"] == "a lighthouse" and meta.fields["seed"] == 5

    half = tmp_path / "x2.png"
    assert main(["upscale", str(src), "--model", str(esrgan), "--scale", "2", "--out", str(half)]) == 0
    with Image.open(half) as im:
        assert im.size == (128, 128)


def test_cli_upscale_with_a_checkpoint_says_so_in_one_line(tmp_path, capsys, tiny_models):
    src = tmp_path / "src.png"
    noise_image(64, 64).save(src)
    code = main(["upscale", str(src), "--model", str(tiny_models.get("sd15", single_file=True)),
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "upscaler" in err
    assert not (tmp_path / "o.png").exists()


def test_the_demo_upscaler_enlarges_the_image_instead_of_drawing_noise(tmp_path, capsys):
    """The upscaler the app's Upscale dialog tells a user without one to make: its results must look
    like the image (a near-black or noisy result would read as a broken feature)."""
    assert main(["make-test-model", str(tmp_path), "--family", "realesrgan-compact"]) == 0
    model = tmp_path / "tiny-realesrgan-compact-x4.safetensors"
    src = tmp_path / "src.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "big.png"
    assert main(["upscale", str(src), "--model", str(model), "--out", str(out)]) == 0
    with Image.open(src) as a, Image.open(out) as b:
        assert b.size == (128, 96)
        nearest = np.asarray(a.convert("RGB").resize(b.size, Image.Resampling.NEAREST), dtype=np.float32)
        diff = np.abs(np.asarray(b.convert("RGB"), dtype=np.float32) - nearest)
    assert diff.mean() < 8, f"the demo upscaler drifted {diff.mean():.1f} levels from the image"


def test_a_cancel_inside_a_tile_is_a_clean_cancel(esrgan):
    """A cancel that arrives while a tile runs stops at the network's next layer with Cancelled."""
    from engine.api import UpscaleRequest
    from engine.engine import Engine

    engine = Engine(device="cpu")
    request = UpscaleRequest(model=str(esrgan), image=noise_image(96, 96), tile=48, overlap=8)
    engine.upscale(request)  # loaded
    cancel = threading.Event()
    network = engine.runner.upscaler.model.model
    first = next(m for m in network.modules() if m is not network)
    hook = first.register_forward_hook(lambda *_: cancel.set())
    try:
        with pytest.raises(Cancelled):
            engine.upscale(request, None, cancel)
    finally:
        hook.remove()
