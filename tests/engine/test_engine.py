"""Engine behaviour a user would notice, on tiny random-weight models through the real loader."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.api import (
    SAMPLERS,
    Cancelled,
    GenerationRequest,
    InvalidRequest,
    ModelError,
    Mode,
    UnsafeModelFile,
)

ROOT = Path(__file__).resolve().parents[2]


def req(model, **kw) -> GenerationRequest:
    base = dict(prompt="a red fox in snow", model=str(model), seed=42, steps=3, width=64, height=64, sampler="Euler")
    base.update(kw)
    return GenerationRequest(**base)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def scene(size=(100, 70)) -> tuple[Image.Image, Image.Image]:
    """A source image (not a multiple of 8) and a rectangular mask inside it."""
    init = Image.new("RGB", size, (30, 120, 200))
    ImageDraw.Draw(init).ellipse((5, 5, 45, 45), fill=(240, 210, 30))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((50, 12, 90, 58), fill=255)
    return init, mask


# ------------------------------------------------------------------------------------ modes


def test_txt2img_gives_requested_size_and_records_what_ran(shared_engine, tiny_models):
    result = shared_engine.generate(req(tiny_models.get(), width=96, height=64))
    assert [im.size for im in result.images] == [(96, 64)]
    assert result.seeds == (42,)
    assert result.request.seed == 42 and result.request.prompt == "a red fox in snow"
    assert result.settings.device == "cpu" and result.settings.dtype == "float32"
    assert result.settings.preset == "fast"
    assert len(result.model_hash) == 10
    t = result.timings
    assert t.encode > 0 and t.denoise > 0 and t.decode > 0 and t.total >= t.encode + t.denoise + t.decode
    m = result.memory  # what the job took (the window estimates a bigger job's need from it)
    assert m is not None and 0 < m.before <= m.peak < m.total


def test_random_seed_is_recorded_and_batch_seeds_count_up(shared_engine, tiny_models):
    result = shared_engine.generate(req(tiny_models.get(), seed=None, batch_count=2))
    first = result.request.seed
    assert isinstance(first, int) and result.seeds == (first, first + 1)
    # Image 2 of the batch regenerates alone from its own seed.
    alone = shared_engine.generate(req(tiny_models.get(), seed=first + 1))
    assert np.array_equal(pixels(alone.images[0]), pixels(result.images[1]))


def test_a_64_bit_seed_is_used_whole_and_a_batch_wraps_past_the_largest(shared_engine, tiny_models):
    from engine.api import MAX_SEED

    big = MAX_SEED  # 2**64-1, ComfyUI's largest
    result = shared_engine.generate(req(tiny_models.get(), seed=big, batch_count=2, steps=2))
    assert result.request.seed == big and result.seeds == (big, 0)
    # The second image is seed 0's image: the wrap is the same seed a lone request would use.
    alone = shared_engine.generate(req(tiny_models.get(), seed=0, steps=2))
    assert np.array_equal(pixels(alone.images[0]), pixels(result.images[1]))
    # (torch's CPU generator draws from the seed's low 32 bits, as it does for ComfyUI, which seeds
    # it the same way: so the whole seed is what reproduces a ComfyUI image's noise.)


def test_img2img_strength_sets_the_steps_and_the_init_image_drives_the_result(shared_engine, tiny_models):
    init, _ = scene((64, 64))
    other = Image.new("RGB", (64, 64), (250, 250, 250))
    events = []
    a = shared_engine.generate(req(tiny_models.get(), mode=Mode.IMG2IMG, init_image=init, strength=0.5, steps=10),
                               on_progress=events.append)
    assert events[-1].total == 5  # strength 0.5 of 10 steps denoises the last 5, as A1111 does
    b = shared_engine.generate(req(tiny_models.get(), mode=Mode.IMG2IMG, init_image=other, strength=0.5, steps=10))
    again = shared_engine.generate(req(tiny_models.get(), mode=Mode.IMG2IMG, init_image=init, strength=0.5, steps=10))
    assert not np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert np.array_equal(pixels(a.images[0]), pixels(again.images[0]))


@pytest.mark.parametrize("only_masked", [False, True])
def test_inpaint_keeps_every_pixel_outside_the_mask(shared_engine, tiny_models, only_masked):
    init, mask = scene()
    size = dict(width=64, height=64) if only_masked else dict(width=104, height=72)
    result = shared_engine.generate(req(tiny_models.get(), mode=Mode.INPAINT, init_image=init, mask=mask,
                                        strength=1.0, only_masked=only_masked, mask_padding=8, **size))
    out = pixels(result.images[0])
    assert result.images[0].size == init.size
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], pixels(init)[outside])
    inside = np.asarray(mask) == 255
    assert np.abs(out[inside].astype(int) - pixels(init)[inside]).mean() > 5  # the region was regenerated


def test_inpaint_seam_is_feathered_not_cut(shared_engine, tiny_models):
    init, mask = scene()
    kw = dict(mode=Mode.INPAINT, init_image=init, mask=mask, strength=1.0, width=104, height=72)
    # The blur only changes the paste-back, so the hard-edged result shows what was generated under the mask.
    hard = pixels(shared_engine.generate(req(tiny_models.get(), mask_blur=0, **kw)).images[0]).astype(float)
    soft = pixels(shared_engine.generate(req(tiny_models.get(), mask_blur=6, **kw)).images[0]).astype(float)
    src = pixels(init).astype(float)
    m = np.asarray(mask) == 255
    assert np.array_equal(soft[~m], src[~m])  # outside the mask: every pixel as it was, band included
    # How much of the generated pixel each result pixel took: 0 = the source, 1 = the generated one.
    diff = hard - src
    strength = np.sqrt((diff ** 2).sum(axis=2))
    alpha = np.where(m, ((soft - src) * diff).sum(axis=2) / np.maximum(strength, 1) ** 2, 0.0)
    known = ~m | (strength > 40)  # where generated and source differ enough to tell (rounding < 0.03)
    assert known[m].mean() > 0.5
    # Distance inside the mask rectangle (50..90 x 12..58) from its nearest edge, for every pixel in it.
    ys, xs = np.mgrid[0:m.shape[0], 0:m.shape[1]]
    depth = np.minimum.reduce([xs - 50, 90 - xs, ys - 12, 58 - ys])
    for d in range(0, 3):  # the edge rows of the band, all four sides: mostly the source
        ring = m & known & (depth == d)
        assert ring.any() and alpha[ring].max() < 0.5, (d, alpha[ring].max())
    deep = m & known & (depth >= 15)
    assert np.abs(alpha[deep] - 1).max() < 0.05  # well inside: all generated
    # A ramp, not a step: on every side, going one pixel inwards never jumps by more than a quarter.
    for axis in (0, 1):
        a, k = np.moveaxis(alpha, axis, 0), np.moveaxis(known, axis, 0)
        both = k[1:] & k[:-1]
        assert np.abs(a[1:] - a[:-1])[both].max() < 0.25
    # ...and it climbs steadily with depth, the same all round the edge.
    means = [alpha[m & known & (depth == d)].mean() for d in range(0, 15)]
    assert all(b >= a - 0.02 for a, b in zip(means, means[1:])), means
    assert means[0] < 0.2 and means[-1] > 0.9


# --------------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_and_is_reproducible(shared_engine, tiny_models, sampler):
    a = shared_engine.generate(req(tiny_models.get(), sampler=sampler, steps=4))
    b = shared_engine.generate(req(tiny_models.get(), sampler=sampler, steps=4))
    assert a.images[0].size == (64, 64)
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert pixels(a.images[0]).std() > 1  # not a flat image


def test_samplers_differ(shared_engine, tiny_models):
    images = {s: pixels(shared_engine.generate(req(tiny_models.get(), sampler=s, steps=4)).images[0])
              for s in ("Euler", "Euler a", "DDIM")}
    assert not np.array_equal(images["Euler"], images["Euler a"])
    assert not np.array_equal(images["Euler"], images["DDIM"])


# --------------------------------------------------------------------------------- families


FAMILIES = ["sd15", "sd15-inpaint", "sd2-v", "sd2-inpaint", "sdxl", "sdxl-inpaint"]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_from_folder_and_single_file_alike(tiny_models, family, no_network):
    from engine.engine import Engine

    engine = Engine(device="cpu")
    folder = engine.generate(req(tiny_models.get(family)))
    single = engine.generate(req(tiny_models.get(family, single_file=True)))
    assert folder.model.format == "diffusers" and single.model.format == "safetensors"
    assert folder.model.family == single.model.family == family.split("-")[0].replace("sd15", "sd1")
    assert folder.model.inpainting == single.model.inpainting == family.endswith("inpaint")
    # Same weights, same config derived from the header: identical pixels.
    assert np.array_equal(pixels(folder.images[0]), pixels(single.images[0]))
    init, mask = scene((64, 64))
    inpainted = engine.generate(req(tiny_models.get(family, single_file=True), mode=Mode.INPAINT,
                                    init_image=init, mask=mask, strength=1.0))
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(inpainted.images[0])[outside], pixels(init)[outside])
    assert no_network == []


def test_sd2_v_model_runs_with_v_prediction(shared_engine, tiny_models):
    result = shared_engine.generate(req(tiny_models.get("sd2-v", single_file=True)))
    assert result.model.prediction_type == "v_prediction"
    assert shared_engine.runner.scheduler_config["prediction_type"] == "v_prediction"


# ----------------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("cancel_at", [1, 3, 6])
def test_cancel_stops_within_one_step_then_next_job_is_normal(shared_engine, tiny_models, cancel_at):
    model = tiny_models.get()
    reference = shared_engine.generate(req(model, steps=6))
    token, seen = threading.Event(), []

    def on_progress(p):
        seen.append(p.step)
        if p.step == cancel_at:
            token.set()

    with pytest.raises(Cancelled) as info:
        shared_engine.generate(req(model, steps=6), on_progress=on_progress, cancel=token)
    assert seen[-1] == cancel_at  # no further step ran
    assert info.value.step == cancel_at
    after = shared_engine.generate(req(model, steps=6))
    assert np.array_equal(pixels(after.images[0]), pixels(reference.images[0]))


def test_cancel_before_start_runs_nothing(shared_engine, tiny_models):
    token = threading.Event()
    token.set()
    seen = []
    with pytest.raises(Cancelled):
        shared_engine.generate(req(tiny_models.get()), on_progress=seen.append, cancel=token)
    assert seen == []


def test_progress_every_step_with_previews(shared_engine, tiny_models):
    events = []
    shared_engine.generate(req(tiny_models.get(), steps=5, batch_count=2), on_progress=events.append)
    assert [(e.image_index, e.step, e.total) for e in events] == [(i, s, 5) for i in range(2) for s in range(1, 6)]
    previews = [e for e in events if e.preview is not None]
    assert previews and all(e.preview.size == (64, 64) and e.preview.mode == "RGB" for e in previews)
    assert events[-1].preview is not None  # the last step always shows
    assert all(b.elapsed >= a.elapsed for a, b in zip(events, events[1:]))


# ------------------------------------------------------------------------- reproducibility


def test_same_seed_same_pixels_in_another_process(shared_engine, tiny_models, tmp_path):
    model = tiny_models.get()
    here = shared_engine.generate(req(model, seed=1234, steps=4, sampler="Euler a"))
    out = tmp_path / "other.png"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "generate", "--model", str(model), "--prompt", "a red fox in snow",
         "--seed", "1234", "--steps", "4", "--sampler", "Euler a", "--cfg", "7", "--width", "64", "--height", "64",
         "--out", str(out), "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(pixels(Image.open(out)), pixels(here.images[0]))


# ----------------------------------------------------------------------- models and errors


def test_switching_models_frees_the_previous_one(tiny_models):
    from engine.engine import Engine

    engine = Engine(device="cpu", keep_models=0)
    engine.load(str(tiny_models.get("sd15")))
    old_unet = weakref.ref(engine.runner.base.unet)
    engine.load(str(tiny_models.get("sd2-v", single_file=True)))
    gc.collect()
    assert old_unet() is None
    assert engine.loaded.family == "sd2"


def test_switching_back_reuses_the_model_kept_in_ram_and_a_changed_file_reloads(tiny_models, tmp_path):
    import shutil

    from engine.engine import Engine

    a = tmp_path / "a.safetensors"
    shutil.copy(tiny_models.get("sd15", single_file=True), a)
    engine = Engine(device="cpu", keep_models=1)
    engine.load(str(a))
    unet = engine.runner.base.unet
    first = engine.generate(req(a))
    engine.load(str(tiny_models.get("sd2-v", single_file=True)))
    engine.load(str(a))
    assert engine.runner.base.unet is unet  # no reload from disk
    assert np.array_equal(pixels(engine.generate(req(a)).images[0]), pixels(first.images[0]))
    engine.load(str(tiny_models.get("sd2-v", single_file=True)))
    a.touch()  # the file changed on disk: the copy in RAM is stale
    import os

    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    engine.load(str(a))
    assert engine.runner.base.unet is not unet
    engine.unload()
    assert not engine._parked


def test_models_stay_loaded_between_requests(shared_engine, tiny_models):
    shared_engine.generate(req(tiny_models.get()))
    pipe = shared_engine.runner.base
    second = shared_engine.generate(req(tiny_models.get()))
    assert shared_engine.runner.base is pipe
    assert second.timings.load == 0.0


def test_a_bad_file_leaves_the_loaded_model_usable(shared_engine, tiny_models, tmp_path):
    good = tiny_models.get()
    shared_engine.generate(req(good))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 4)
    with pytest.raises(ModelError) as info:
        shared_engine.generate(req(broken))
    assert "broken.safetensors" in str(info.value) and "\n" not in str(info.value)
    assert shared_engine.loaded.path == str(Path(good).resolve())
    assert shared_engine.generate(req(good)).images


def test_pickle_checkpoint_is_refused_and_never_unpickled(shared_engine, tmp_path):
    import pickle

    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    for name in ("evil.ckpt", "evil.safetensors"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(Evil(), protocol=4))
        with pytest.raises(UnsafeModelFile) as info:
            shared_engine.load(str(path))
        assert ".safetensors" in str(info.value)
    assert not canary.exists()


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(width=100), "width"),
        (dict(height=8), "height"),
        (dict(width=4104), "width"),
        (dict(steps=0), "steps"),
        (dict(steps=151), "steps"),
        (dict(sampler="Heun++"), "sampler"),
        (dict(seed=-1), "seed"),
        (dict(batch_count=0), "batch_count"),
        (dict(mode=Mode.IMG2IMG), "init_image"),
        (dict(mode=Mode.INPAINT, init_image=Image.new("RGB", (64, 64))), "mask"),
        (dict(mode=Mode.INPAINT, init_image=Image.new("RGB", (64, 64)), mask=Image.new("L", (64, 64), 0)), "mask"),
        (dict(mode=Mode.IMG2IMG, init_image=Image.new("RGB", (64, 64)), strength=0.0), "strength"),
        (dict(memory_preset="huge"), "memory_preset"),
    ],
)
def test_bad_requests_name_the_field_and_range(changes, field):
    with pytest.raises(InvalidRequest) as info:
        req("m", **changes)
    assert info.value.field == field
    assert "\n" not in str(info.value) and str(info.value).startswith(field)


def test_empty_mask_message_says_what_to_do():
    with pytest.raises(InvalidRequest, match="empty"):
        req("m", mode=Mode.INPAINT, init_image=Image.new("RGB", (64, 64)), mask=Image.new("L", (64, 64), 0))


def test_sampler_spacing_does_not_depend_on_how_the_config_was_saved(tiny_models, tmp_path):
    """A hub config that leaves timestep_spacing out and one that spells it out give the same image."""
    import json
    import shutil

    from engine.engine import Engine

    spelled = tmp_path / "spelled"
    shutil.copytree(tiny_models.get(), spelled)
    config_path = spelled / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["timestep_spacing"] = "trailing"  # a different explicit choice must be overridden too
    config_path.write_text(json.dumps(config))
    engine = Engine(device="cpu")
    a = engine.generate(req(tiny_models.get(), sampler="Euler a", steps=4))
    b = engine.generate(req(spelled, sampler="Euler a", steps=4))
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))


def test_warm_imports_leave_nothing_for_the_first_load_to_import(tiny_models):
    """The app warms imports on its engine thread; a first load must then import (almost) nothing,
    because module initialisation holds the GIL and would stall the GUI mid-generation."""
    code = (
        "import sys; from engine.warmup import warm_imports; warm_imports();"
        "from engine.engine import Engine; from engine.api import GenerationRequest;"
        "before = set(sys.modules); e = Engine(device='cpu');"
        f"e.generate(GenerationRequest(prompt='x', model={str(tiny_models.get('sd15', single_file=True))!r}, steps=2,"
        " width=64, height=64, seed=1));"
        "print(sorted(m for m in set(sys.modules) - before))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    late = eval(proc.stdout.strip().splitlines()[-1])
    assert late == [], late
