"""The family contract: one suite, parametrized over every registered family's tiny test model, that
checks the guarantees the core gives every family. A new family that forgets one fails here.

Per family: it loads through the real Engine; every mode it declares generates (and the ones it
does not are refused in one line); progress comes every step; a cancel at step k stops within one
step with no image; every memory preset applies; a simulated out-of-memory drops one preset and is
remembered; a preview arrives; the metadata written regenerates the same pixels on CPU; LoRA and
weighting syntax is applied or stripped with a notice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import Cancelled, GenerationRequest, InvalidRequest, Mode, UpscaleRequest
from engine.families.base import ALL_MODES

# One test model per family (the first it declares), built once per session; and those a family marks
# ``contract`` (a variant that runs other pipelines, such as Qwen-Image-Edit) in the slow run: an
# instruction editor reads its input at about one megapixel whatever size is asked, a minute a job here.
MODELS = [(family.name, family.test_models()[0]) for family in families.families()]
EXTRA = [pytest.param((model.name, model), marks=pytest.mark.slow, id=model.name) for family in families.families()
         for model in family.test_models()[1:] if model.contract]
LADDER = ("fast", "balanced", "low", "minimal")


@pytest.fixture(scope="session")
def family_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("family-models")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            _family, model = families.test_models()[name]
            dest = root / name
            built[name] = Path(model.write(dest / (f"{name}.safetensors" if model.layouts == ("single-file",)
                                                   else name), model.layouts[0]))
        return built[name]

    return get


@pytest.fixture(scope="module", params=[pytest.param(m, id=m[0]) for m in MODELS] + EXTRA)
def subject(request, family_models, tmp_path_factory):
    """(engine, model path, capabilities) for one family: one Engine (with its own rung memory) serves
    that family's tests, as the app's one engine serves many jobs."""
    from engine.engine import Engine
    from engine.files.probe import inspect_model
    from engine.upscale import inspect_upscaler

    _name, model = request.param
    path = family_models(model.name)
    info = inspect_model(path)
    if info.kind == "upscaler" or info.format == "pth":
        info = inspect_upscaler(str(path))
    caps = families.capabilities(info)
    assert caps is not None, f"no family claims its own test model {model.name}"
    state = tmp_path_factory.mktemp("state")
    engine = Engine(device="cpu", state_dir=state)
    engine.state = state
    return engine, path, caps


def _source(size=(64, 64)):
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _mask(size=(64, 64)):
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    return mask


def _request(path: Path, caps, mode: Mode, **changes) -> GenerationRequest:
    """A small request in ``mode`` that the family takes (its own sizes where it only makes those)."""
    if caps.upscale_kind == "diffusion" and mode is Mode.IMG2IMG:
        from engine.families import upscale_request
        from engine.files.probe import inspect_model

        return upscale_request(_source((32, 32)), str(path), inspect_model(path), seed=7).replace(steps=2, **changes)
    width, height = caps.sizes[0] if caps.sizes else (64, 64)
    fields = dict(prompt="a red fox in the snow", model=str(path), mode=mode, seed=7, steps=3, width=width,
                  height=height, guidance_scale=3.0)
    if caps.samplers:
        fields["sampler"] = caps.samplers[0] if "Euler" not in caps.samplers else "Euler"
    if mode in (Mode.IMG2IMG, Mode.INPAINT):
        fields.update(init_image=_source((width, height)), strength=0.8)
    if mode is Mode.INPAINT:
        fields["mask"] = _mask((width, height))
    fields.update(changes)
    return GenerationRequest(**fields)


def _run(engine, path, caps, mode=None, cancel_at=None, **changes):
    """Run one job; returns (result or the exception, progress events)."""
    events = []
    cancel = threading.Event()

    def on_progress(p):
        events.append(p)
        if cancel_at is not None and len(events) >= cancel_at:
            cancel.set()

    try:
        if caps.upscale_kind == "gan":
            request = UpscaleRequest(model=str(path), image=_source((96, 96)), tile=changes.pop("tile", 48),
                                     overlap=8, **changes)
            return engine.upscale(request, on_progress, cancel), events
        return engine.generate(_request(path, caps, mode or caps.modes[0], **changes), on_progress, cancel), events
    except Cancelled as exc:
        return exc, events


def _pixels(result) -> np.ndarray:
    image = result.image if hasattr(result, "image") else result.images[0]
    return np.asarray(image.convert("RGB"))


def test_loads_and_says_what_it_runs(subject):
    engine, path, caps = subject
    result, _ = _run(engine, path, caps)
    assert not isinstance(result, Exception)
    assert engine.loaded is not None and engine.loaded.path == str(Path(path).resolve())
    assert engine.runtime is not None and engine.runtime.preset in LADDER  # never "Loading model…" in the window
    assert caps.label and families.family_for(engine.loaded) is not None


def test_every_declared_mode_generates_and_the_others_are_refused_in_one_line(subject):
    engine, path, caps = subject
    if caps.upscale_kind == "gan":
        pytest.skip("a GAN upscaler runs Engine.upscale only: no generation modes")
    for mode in ALL_MODES:
        if mode in caps.modes:
            result = engine.generate(_request(path, caps, mode))
            assert len(result.images) == 1 and result.request.mode is mode
            assert result.images[0].size == (result.request.width, result.request.height)
            assert result.seeds == (7,)
        else:
            with pytest.raises(InvalidRequest) as caught:
                engine.generate(_request(path, caps, mode))
            assert "\n" not in str(caught.value) and caps.refusal(mode) in str(caught.value)


def test_progress_every_step_and_a_preview_arrives(subject):
    engine, path, caps = subject
    result, events = _run(engine, path, caps)
    assert not isinstance(result, Exception) and events
    # Each stage counts its steps 1, 2, ... total without gaps.
    by_stage: dict[int, list[int]] = {}
    for p in events:
        by_stage.setdefault(p.stage, []).append(p.step)
        assert 1 <= p.step <= p.total
    for stage, steps in by_stage.items():
        total = next(p.total for p in events if p.stage == stage)
        assert steps == list(range(1, total + 1)), (stage, steps)
    if caps.upscale_kind != "gan":
        assert any(p.preview is not None for p in events), "no preview image in any progress event"


def test_cancel_at_step_k_stops_within_one_step_with_no_image(subject):
    engine, path, caps = subject
    outcome, events = _run(engine, path, caps, cancel_at=2)
    assert isinstance(outcome, Cancelled)
    assert len(events) <= 3, f"{len(events)} progress events after a cancel at event 2"
    # The engine stays ready: the next job runs.
    again, _ = _run(engine, path, caps)
    assert not isinstance(again, Exception)


def test_img2img_steps_too_few_for_the_strength_is_refused_in_one_line(subject):
    engine, path, caps = subject
    if Mode.IMG2IMG not in caps.modes or caps.upscale_kind or not caps.strength_shortens:
        pytest.skip("no img2img that runs steps x strength steps")
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(_request(path, caps, Mode.IMG2IMG, steps=1, strength=0.5))
    assert caught.value.field == "steps" and "\n" not in str(caught.value)
    assert "at least 2 steps" in str(caught.value)
    assert engine.generate(_request(path, caps, Mode.IMG2IMG, steps=2, strength=0.5)).images


def test_a_bad_decode_is_never_a_silent_black_image(subject, monkeypatch):
    """Every family's output passes the core's guard: invalid pixels (here: every check says NaN) end
    in one plain error, and the engine runs the next job."""
    from engine.api import EaselError
    from engine.core import decode

    engine, path, caps = subject
    monkeypatch.setattr(decode, "bad_pixels", lambda pixels: True)
    if caps.upscale_kind == "gan":  # a GAN tile may be black for real: only NaN counts there
        import torch

        monkeypatch.setattr(torch, "isfinite", lambda t: torch.zeros_like(t, dtype=torch.bool))
    with pytest.raises(EaselError) as caught:
        _run(engine, path, caps)
    assert "\n" not in str(caught.value) and ("blank" in str(caught.value) or "invalid" in str(caught.value))
    monkeypatch.undo()
    again, _ = _run(engine, path, caps)
    assert not isinstance(again, Exception)


def test_every_memory_preset_applies(subject):
    engine, path, caps = subject
    for preset in LADDER:
        result, _ = _run(engine, path, caps, memory_preset=preset)
        assert result.settings.preset == preset if hasattr(result, "settings") else engine.runtime.preset == preset


def _denoiser(runner):
    """The module every step runs through (UNet, transformer, or the GAN network)."""
    for pipe in runner.pipelines():
        for name in ("unet", "transformer", "model"):
            module = getattr(pipe, name, None)
            if module is not None and hasattr(module, "forward"):
                return module
    raise AssertionError("no denoiser found")


def test_out_of_memory_drops_one_preset_and_is_remembered(subject, tmp_path):
    import torch

    from engine.engine import Engine

    engine, path, caps = subject
    result, _ = _run(engine, path, caps, memory_preset="fast")  # loaded on "fast"
    module = _denoiser(engine.runner)
    original = module.forward
    raised = []

    def forward(*args, **kwargs):
        if not raised:
            raised.append(engine.runner.settings.preset)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return original(*args, **kwargs)

    module.forward = forward
    try:
        result, _ = _run(engine, path, caps, memory_preset="fast")
    finally:
        module.forward = original
    assert raised == ["fast"]
    assert not isinstance(result, Exception)
    assert engine.runtime.preset == "balanced"
    notices = getattr(result, "notices", None)
    if notices is not None:
        assert "ran out of memory" in notices[0] and "“balanced”" in notices[0]
    # A new Engine (a restart) starts this model on the rung that worked.
    fresh = Engine(device="cpu", state_dir=engine.state)
    again, _ = _run(fresh, path, caps, memory_preset="auto")
    assert fresh.runtime.preset == "balanced"


def test_metadata_regenerates_the_same_pixels(subject, tmp_path):
    from engine.metadata import read_metadata
    from engine.outputs import save_result

    engine, path, caps = subject
    if caps.upscale_kind == "gan":
        pytest.skip("a GAN upscale keeps its source's settings (A1111 Extras); it is not regenerated")
    mode = caps.modes[0]
    first = engine.generate(_request(path, caps, mode))
    saved = save_result(first, tmp_path / "out")[0]
    meta = read_metadata(saved)
    assert meta.found and meta.fields["seed"] == 7 and meta.fields["steps"] == first.request.steps
    extra = {"model": str(path)}
    if mode is not Mode.TXT2IMG:
        extra["init_image"] = first.request.init_image
    if mode is Mode.INPAINT:
        extra["mask"] = first.request.mask
    again = engine.generate(meta.to_request(**extra))
    assert np.array_equal(_pixels(first), _pixels(again))
    text = meta.raw.get("parameters", "")
    assert ("Sampler:" in text) == bool(caps.samplers), "a Sampler is recorded only for families that use one"


def test_lora_and_weighting_syntax_is_applied_or_stripped_with_a_notice(subject):
    engine, path, caps = subject
    if caps.role == "upscaler" and caps.upscale_kind == "gan":
        pytest.skip("no prompt")
    request = _request(path, caps, caps.modes[0], prompt="a (red:1.4) fox <lora:nowhere:0.7>")
    result = engine.generate(request)
    notices = " ".join(result.notices)
    if "lora" in caps.addons:
        assert "nowhere" in notices  # looked up in the library and reported missing
    else:
        assert "LoRAs do not apply" in notices and "<lora:nowhere>" in notices
    if not caps.prompt_weighting:
        assert "Prompt weights such as (word:1.2) do not apply" in notices


def test_hires_fix_and_detail_upscale_run_or_are_refused_in_one_line(subject, monkeypatch):
    """Every family that runs image to image takes the hires fix (two phases) and the detail upscale (tiles)
    through the core; the others refuse both in one line before any work. Each tile's noise comes from
    the image's one noise field (engine.core.noise)."""
    engine, path, caps = subject
    if caps.upscale_kind == "gan":
        pytest.skip("a GAN upscaler runs Engine.upscale only")
    from engine.core.hires import check

    hires = _request(path, caps, Mode.TXT2IMG, hires_scale=2, hires_steps=3, hires_strength=0.7) \
        if Mode.TXT2IMG in caps.modes or caps.role != "generator" else None
    tiled = _request(path, caps, Mode.IMG2IMG, width=96, height=64, tile=64, tile_overlap=32) \
        if caps.upscale_kind != "diffusion" else None
    try:
        check(caps, tiled or hires)
    except InvalidRequest as refused:
        assert "\n" not in str(refused) and "image to image" in str(refused)
        return
    if hires is not None:
        events = []
        result = engine.generate(hires, events.append)
        assert result.images[0].size == (2 * hires.width, 2 * hires.height) and result.request.hires
        assert {e.stage for e in events} == {1, 2} and {e.stages for e in events} == {2}
    from engine.core.noise import NoiseWindow

    events, draws, take = [], [], NoiseWindow.take
    monkeypatch.setattr(NoiseWindow, "take", lambda self, *a: draws.append((self.x, self.y)) or take(self, *a))
    result = engine.generate(tiled, events.append)
    assert result.images[0].size == (96, 64) and {e.stage for e in events} == {1, 2}
    if caps.latent_space != "tokens":  # (aMUSEd masks image tokens: no noise to draw)
        assert {x for x, _ in draws} == {0, 32}  # both tiles drew their noise from the field
