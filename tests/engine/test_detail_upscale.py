"""The detail upscale: enlarge, then img2img over overlapping tiles with any img2img model. The result's
size, overlaps cross-faded (no hard edge where one tile meets the next), regenerated bit-identical on
CPU, cancel between tiles and inside a tile's steps with no image, the CLI and its metadata."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Cancelled, GenerationRequest, InvalidRequest
from engine.cli import main
from engine.core.tiles import even_tiles
from engine.metadata import read_metadata
from engine.metadata.write import png_info


@pytest.fixture(scope="module")
def model(tiny_models) -> str:
    return str(tiny_models.get())


def gradient(w: int, h: int) -> Image.Image:
    x = np.broadcast_to(np.linspace(0, 255, w)[None, :], (h, w))
    y = np.broadcast_to(np.linspace(0, 255, h)[:, None], (h, w))
    return Image.fromarray(np.stack([x, y, np.full((h, w), 128.0)], axis=2).astype("uint8"))


def detail(model: str, source: Image.Image, **changes) -> GenerationRequest:
    fields = dict(prompt="a field", model=model, mode="img2img", init_image=source, steps=2, strength=0.5,
                  width=source.width * 2, height=source.height * 2, seed=5, tile=64, tile_overlap=32)
    fields.update(changes)
    return GenerationRequest(**fields)


def test_detail_upscale_size_stages_and_metadata(shared_engine, model):
    events = []
    result = shared_engine.generate(detail(model, gradient(64, 32)), on_progress=events.append)
    assert result.images[0].size == (128, 64)
    (size, xs), (_, ys) = even_tiles(128, 64, 32, 8), even_tiles(64, 64, 32, 8)
    assert size == 64 and len(xs) * len(ys) == 3
    assert sorted({(e.stage, e.stages, e.stage_name) for e in events}) == [
        (i, 3, f"Detail: tile {i} of 3") for i in (1, 2, 3)]
    text = png_info(result, 0, app_version="t").chunks[0][1].decode("latin-1")
    assert "Size: 128x64" in text and "Denoising strength: 0.5" in text
    assert "Detail upscaler: Lanczos, Detail tile: 64, Detail tile overlap: 32" in text


def tile_outputs(monkeypatch) -> list:
    """Records each tile's own img2img output as the detail upscale makes it (before the cross-fade)."""
    from engine.core import detail as core_detail

    pieces, real = [], core_detail.run_tiled

    def recording(*args, **kwargs):
        run_tile = args[5]

        def run_and_keep(*tile):
            piece = run_tile(*tile)
            pieces.append(piece.copy())
            return piece
        return real(*args[:5], run_and_keep, *args[6:], **kwargs)

    monkeypatch.setattr(core_detail, "run_tiled", recording)
    return pieces


def noise_draws(monkeypatch) -> list:
    """Records every noise draw a tile's pipeline got from the image's noise field: (x, y, draw, tensor)."""
    from engine.core.noise import NoiseWindow

    draws, real = [], NoiseWindow.take

    def take(self, shape, scale):
        k = self.draws
        out = real(self, shape, scale)
        draws.append((self.x // scale, self.y // scale, k, out.clone()))
        return out

    monkeypatch.setattr(NoiseWindow, "take", take)
    return draws


def test_overlaps_cross_fade_from_one_tile_to_the_next(shared_engine, model, monkeypatch):
    """Where two tiles overlap the result goes over gradually from the left tile's pixels to the right
    one's: no column where one tile's picture ends and the next begins (a hard edge)."""
    source = gradient(64, 32)
    request = detail(model, source)
    pieces = tile_outputs(monkeypatch)
    out = np.asarray(shared_engine.generate(request).images[0], dtype=np.float32)
    size, xs = even_tiles(128, 64, 32, 8, align=8)
    assert len(pieces) == 3
    left, right = pieces[0], pieces[1]
    band = xs[0] + size - xs[1]  # 32 px shared by tiles 0 and 1
    region = out[:, xs[1]:xs[1] + band]
    a, b = left[:, xs[1]:], right[:, :band]
    # at the band's start the left tile's picture, at its end the right tile's, in between a mix of both
    assert np.abs(region[:, 0] - a[:, 0]).mean() < np.abs(region[:, 0] - b[:, 0]).mean() / 4
    assert np.abs(region[:, -1] - b[:, -1]).mean() < np.abs(region[:, -1] - a[:, -1]).mean() / 4
    weights = np.array([((region[:, i] - a[:, i]) * (b[:, i] - a[:, i])).sum() / max(((b[:, i] - a[:, i]) ** 2).sum(), 1e-6)
                        for i in range(band)])
    assert np.all(np.diff(weights) > -0.05) and np.all(np.diff(weights) < 0.1)  # a ramp, no jump
    # no hard edge: the step across the band's borders is no larger than the steps inside the tiles
    steps = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))
    inside = np.percentile(steps[np.r_[2:xs[1] - 2, xs[1] + band + 2:steps.size - 2]], 99)
    assert steps[xs[1] - 1] <= inside and steps[xs[1] + band - 1] <= inside


def test_regenerate_is_bit_identical_on_cpu(shared_engine, model, tmp_path):
    source = gradient(64, 32)
    first = shared_engine.generate(detail(model, source, seed=None))
    path = tmp_path / "detail.png"
    first.images[0].save(path, pnginfo=png_info(first, 0, app_version="t"))
    again = shared_engine.generate(read_metadata(str(path)).to_request(model=model, init_image=source))
    assert again.request.tile == 64 and again.request.seed == first.request.seed
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(first.images[0]))


def test_overlapping_tiles_start_from_the_same_noise(shared_engine, model, monkeypatch):
    """One noise field over the whole image: where two tiles overlap, both start from the same noise
    (no change of grain at the seam), and a place's noise is the same whatever the tile size."""
    source = gradient(64, 32)
    draws = noise_draws(monkeypatch)
    shared_engine.generate(detail(model, source, strength=1.0))
    by_tile = {}
    for x, y, k, tensor in draws:
        by_tile.setdefault((x, y), {})[k] = tensor
    assert len(by_tile) == 3 and all(len(d) >= 2 for d in by_tile.values())  # the VAE's sample, the starting noise
    (x0, _), (x1, _) = sorted(by_tile)[:2]
    width = by_tile[(x0, 0)][1].shape[-1]
    shared = x0 + width - x1
    assert shared > 0
    for k in by_tile[(x0, 0)]:
        left, right = by_tile[(x0, 0)][k], by_tile[(x1, 0)][k]
        assert torch_equal(left[..., x1 - x0:], right[..., :shared])
        assert not torch_equal(left[..., :shared], right[..., :shared])  # not one tile's noise repeated

    # another tile grid (one 128 px tile): the same noise at every place
    draws.clear()
    shared_engine.generate(detail(model, source, strength=1.0, tile=128, tile_overlap=32))
    whole = {k: t for x, y, k, t in draws}
    assert len({(x, y) for x, y, _, _ in draws}) == 1
    for (x, y), tile in by_tile.items():
        for k, tensor in tile.items():
            assert torch_equal(whole[k][..., y:y + tensor.shape[-2], x:x + tensor.shape[-1]], tensor)


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


@pytest.mark.parametrize("where", ["between tiles", "inside a tile"])
def test_cancel_mid_way_gives_cancelled_and_no_image(shared_engine, model, where):
    cancel = threading.Event()
    seen = []

    def on_progress(p):
        seen.append((p.stage, p.step))
        if p.stage == 2 and (where == "inside a tile" or p.step == p.total):
            cancel.set()

    with pytest.raises(Cancelled):
        shared_engine.generate(detail(model, gradient(64, 32)), on_progress=on_progress, cancel=cancel)
    assert max(stage for stage, _ in seen) == 2  # tile 3 never started
    if where == "inside a tile":
        assert seen[-1] == (2, 1) and detail("m", gradient(64, 32)).steps * 0.5 == 1  # its only step: cancelled inside


def test_a_gan_enlarges_first_as_its_own_stage(shared_engine, model, tmp_path):
    from engine.families.gan.testmodel import make_compact_test_model

    gan = make_compact_test_model(tmp_path / "tiny-compact-x4.safetensors")
    events = []
    result = shared_engine.generate(detail(model, gradient(32, 32), width=64, height=64, upscaler=str(gan)),
                                    on_progress=events.append)
    assert result.images[0].size == (64, 64)
    assert events[0].stage == 1 and "Upscaling with tiny-compact-x4" in events[0].stage_name
    assert result.request.upscaler == "tiny-compact-x4"


def test_bad_tiles_get_one_plain_line():
    src = gradient(64, 64)
    for changes, words in (({"tile": 40}, "tile: must be 0 .* at least 64"), ({"tile": 100}, "multiple of 8"),
                           ({"tile_overlap": 40}, "tile_overlap: must be at most half the tile"),
                           ({"mode": "txt2img"}, "tiles are for image to image")):
        with pytest.raises(InvalidRequest, match=words):
            detail("m", src, **changes)


def test_tiles_sit_on_the_model_size_grid():
    for length, tile, overlap, grid in ((4096, 1024, 128, 16), (1000, 512, 64, 8), (2048, 768, 96, 16)):
        for align in (1, 8):
            size, xs = even_tiles(length, tile, overlap, grid, align=align)
            assert size % grid == 0 and size <= tile and xs[0] == 0 and xs[-1] + size == length
            assert all(b - a <= size - overlap for a, b in zip(xs, xs[1:])) and all(x % align == 0 for x in xs)
    size, xs = even_tiles(128, 64, 8, 8, minimum=64)  # evenly spread would be 3 of 48 px: below a model's least size
    assert size == 64 and xs == [0, 32, 64]


def test_cli_upscale_detail(tmp_path, capsys, model):
    src = tmp_path / "src.png"
    assert main(["generate", "--model", model, "--prompt", "a red barn", "--steps", "4", "--seed", "2",
                 "--width", "64", "--height", "64", "--out", str(src), "--device", "cpu"]) == 0
    out = tmp_path / "big.png"
    code = main(["upscale", "--detail", "--model", model, "--scale", "2", "--strength", "0.5", "--tile", "96",
                 "--overlap", "32", "--steps", "2", str(src), "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (128, 128)
    stored = read_metadata(str(out))
    assert stored.fields["prompt"] == "a red barn" and stored.fields["tile"] == 96
    assert "Detail upscaler: Lanczos, Detail tile: 96, Detail tile overlap: 32" in stored.raw["parameters"]
    capsys.readouterr()
    assert main(["upscale", "--model", str(Path(model)), "--strength", "0.3", str(src), "--out", str(out)]) == 2
    assert "go with --detail" in capsys.readouterr().err
