"""Sizes off the latent grid are padded and cropped back (never stretched); the canvas extends for outpainting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.api import GenerationRequest, ImageError, Mode
from engine.imageprep import extend_canvas, padded_size, plan_img2img, plan_inpaint


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_padded_size_rounds_up_to_the_latent_grid():
    assert padded_size(100, 70) == (104, 72)
    assert padded_size(64, 64) == (64, 64)
    assert padded_size(20, 513) == (64, 520)


def test_whole_image_inpaint_pads_instead_of_stretching():
    src = noise(100, 70)
    mask = Image.new("L", src.size, 0)
    ImageDraw.Draw(mask).rectangle((10, 10, 40, 40), fill=255)
    plan = plan_inpaint(GenerationRequest(prompt="x", mode=Mode.INPAINT, init_image=src, mask=mask,
                                          width=104, height=72))
    work = np.asarray(plan.work_image)
    assert plan.padded and plan.work_image.size == (104, 72)
    assert np.array_equal(work[:70, :100], np.asarray(src))  # the image itself, not resampled
    assert np.array_equal(work[:70, 100:], np.repeat(np.asarray(src)[:, 99:100], 4, axis=1))  # edge repeated
    assert np.asarray(plan.work_mask)[70:].max() == 0  # the padding is never regenerated


def test_explicit_other_size_still_resizes_as_asked():
    src = noise(100, 70)
    mask = Image.new("L", src.size, 255)
    plan = plan_inpaint(GenerationRequest(prompt="x", mode=Mode.INPAINT, init_image=src, mask=mask,
                                          width=64, height=64))
    assert not plan.padded and plan.work_image.size == (64, 64)


def test_img2img_pads_and_the_engine_crops_back(shared_engine, tiny_models):
    src = noise(100, 70)
    plan = plan_img2img(src, 104, 72)
    assert plan.crop == (100, 70) and np.array_equal(np.asarray(plan.work_image)[:70, :100], np.asarray(src))
    result = shared_engine.generate(GenerationRequest(prompt="x", model=str(tiny_models.get()), mode=Mode.IMG2IMG,
                                                      init_image=src, width=104, height=72, steps=2, seed=1,
                                                      strength=0.5))
    assert result.images[0].size == (100, 70)


@pytest.mark.parametrize("fill", ["edge", "blur", "colour"])
def test_extend_canvas_grows_image_and_mask_and_keeps_the_original(fill):
    src = noise(50, 40)
    image, mask = extend_canvas(src, 10, 0, 30, 5, fill=fill)
    assert image.size == mask.size == (90, 45)
    a, m = np.asarray(image), np.asarray(mask)
    assert np.array_equal(a[0:40, 10:60], np.asarray(src))
    assert (m[0:40, 10:60] == 0).all() and (m[:, :10] == 255).all() and (m[:, 60:] == 255).all() and (m[40:] == 255).all()
    if fill == "edge":
        assert np.array_equal(a[0:40, 60], np.asarray(src)[:, -1])  # the border pixels stretched out
        assert np.array_equal(a[0:40, 89], np.asarray(src)[:, -1])
    if fill == "blur":
        # Next to the image the fill continues its edge; far out it is smooth (low variance).
        assert np.abs(a[0:40, 60].astype(int) - np.asarray(src)[:, -1]).mean() < 40
        def roughness(x):  # mean step between neighbouring rows
            return np.abs(np.diff(x.astype(int), axis=0)).mean()

        assert roughness(a[0:40, 87]) < roughness(np.asarray(src)[:, -1]) / 5
    if fill == "colour":
        assert len(np.unique(a[:, 80].reshape(-1, 3), axis=0)) == 1


def test_extend_canvas_rejects_negative_amounts():
    with pytest.raises(ImageError):
        extend_canvas(noise(8, 8), -1, 0, 0, 0)
