"""The hires fix (A1111's): one job, two phases with progress, the enlarged size, metadata as A1111 writes
it and read back from A1111's own text, regenerated exactly; refused in one line where it cannot run."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Cancelled, GenerationRequest, InvalidRequest, Mode
from engine.cli import main
from engine.metadata import read_metadata
from engine.metadata.a1111 import parse_a1111
from engine.metadata.write import png_info

A1111_TEXT = (
    "a castle on a hill\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Hires upscale: 1.5, "
    "Hires steps: 10, Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1"
)


@pytest.fixture(scope="module")
def model(tiny_models) -> str:
    return str(tiny_models.get())


@pytest.fixture(scope="module")
def gan(tmp_path_factory) -> Path:
    from engine.families.gan.testmodel import make_compact_test_model

    return make_compact_test_model(tmp_path_factory.mktemp("gan") / "tiny-compact-x4.safetensors")


def hires_request(model: str, **changes) -> GenerationRequest:
    fields = dict(prompt="a lighthouse", model=model, steps=4, width=64, height=64, seed=7, hires_scale=2,
                  hires_steps=4, hires_strength=0.5)
    fields.update(changes)
    return GenerationRequest(**fields)


def test_hires_fix_makes_the_enlarged_image_in_two_phases(shared_engine, model):
    events = []
    result = shared_engine.generate(hires_request(model), on_progress=events.append)
    assert result.images[0].size == (128, 128)
    first = [e for e in events if e.stage == 1]
    second = [e for e in events if e.stage == 2]
    assert {e.stages for e in events} == {2}
    assert [e.step for e in first] == [1, 2, 3, 4] and first[0].stage_name == "Hires fix: first pass 64x64"
    assert [e.step for e in second] == [1, 2] and second[0].stage_name == "Hires fix: second pass 128x128"
    # the second pass changed the enlarged first pass (not a plain resize of it)
    plain = shared_engine.generate(hires_request(model, hires_scale=0)).images[0]
    resized = np.asarray(plain.resize((128, 128), Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(np.asarray(result.images[0], dtype=np.int16) - resized).mean() > 5
    assert result.request.hires_scale == 2 and result.request.seed == 7 and result.request.width == 64


def test_hires_metadata_is_written_as_a1111_writes_it_and_regenerates(shared_engine, model, tmp_path):
    result = shared_engine.generate(hires_request(model, hires_steps=6, hires_strength=0.45))
    path = tmp_path / "hires.png"
    result.images[0].save(path, pnginfo=png_info(result, 0, app_version="test"))
    text = read_metadata(str(path)).raw["parameters"]
    assert "Size: 64x64" in text
    assert "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 6, Hires upscaler: Lanczos" in text
    stored = read_metadata(str(path))
    again = shared_engine.generate(stored.to_request(model=model))
    assert again.images[0].size == (128, 128)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))
    # the A1111 text alone (no easel chunk) gives the same hires settings back
    fields = parse_a1111(text).fields
    assert (fields["hires_scale"], fields["hires_steps"], fields["hires_strength"], fields["upscaler"]) == (2, 6, 0.45, "Lanczos")
    assert fields["mode"] == "txt2img" and "strength" not in fields


def test_an_a1111_hires_image_restores_its_hires_settings():
    meta = parse_a1111(A1111_TEXT)
    assert meta.fields["mode"] == "txt2img"
    assert meta.fields["hires_scale"] == 1.5 and meta.fields["hires_steps"] == 10
    assert meta.fields["hires_strength"] == 0.45 and meta.fields["upscaler"] == "R-ESRGAN 4x+"
    request = meta.to_request(model="m")
    assert request.hires and request.output_size == (768, 1152) and request.mode is Mode.TXT2IMG
    # A1111's latent upscalers are Easel's too; one it does not have is a plain resize, said in a warning
    latent = parse_a1111(A1111_TEXT.replace("R-ESRGAN 4x+", "Latent (nearest-exact)"))
    assert latent.fields["upscaler"] == "Latent (nearest-exact)" and not latent.warnings
    unknown = parse_a1111(A1111_TEXT.replace("R-ESRGAN 4x+", "Latent (lanczos)"))
    assert unknown.fields["upscaler"] == "Lanczos" and any("Latent (lanczos)" in w for w in unknown.warnings)
    # "Hires resize" (a target size instead of a factor) gives the factor
    resized = parse_a1111(A1111_TEXT.replace("Hires upscale: 1.5", "Hires resize: 1024x1536"))
    assert resized.fields["hires_scale"] == 2
    # a plain img2img image is not mistaken for a hires fix
    img2img = parse_a1111(A1111_TEXT.split(", Hires upscale")[0])
    assert img2img.fields["mode"] == "img2img" and "hires_scale" not in img2img.fields


def test_hires_fix_with_a_gan_upscaler_is_a_stage_and_is_recorded_by_name(shared_engine, model, gan):
    events = []
    result = shared_engine.generate(hires_request(model, upscaler=str(gan)), on_progress=events.append)
    assert result.images[0].size == (128, 128)
    assert {e.stages for e in events} == {3}
    assert any(e.stage == 2 and "tiny-compact-x4" in e.stage_name for e in events)
    assert result.request.upscaler == "tiny-compact-x4"  # a name, never the user's folders
    text = png_info(result, 0, app_version="t").chunks[0][1].decode("latin-1")
    assert "Hires upscaler: tiny-compact-x4" in text and str(gan.parent) not in text


def test_cancel_in_the_second_pass_gives_cancelled_and_no_image(shared_engine, model):
    cancel = threading.Event()

    def on_progress(p):
        if p.stage == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        shared_engine.generate(hires_request(model), on_progress=on_progress, cancel=cancel)
    assert shared_engine.generate(hires_request(model, hires_scale=0)).images  # the engine is still ready


@pytest.mark.parametrize("changes, words", [
    ({"hires_scale": 5}, "hires_scale: must be 0 (off) or from 1 to 4"),
    ({"hires_scale": 4, "width": 2048}, "larger than 4096 px"),
    ({"hires_strength": 0}, "hires_strength: must be above 0"),
    ({"hires_steps": -1}, "hires_steps"),
    ({"upscaler": " "}, "upscaler: give Lanczos"),
    ({"mode": "img2img", "init_image": Image.new("RGB", (64, 64))}, "use it with text to image"),
])
def test_bad_hires_settings_get_one_plain_line(changes, words):
    with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        hires_request("m", **changes)
    assert "\n" not in str(info.value)


def test_models_without_image_to_image_refuse_the_hires_fix():
    from engine.core.hires import check
    from engine.families.base import capabilities

    caps = capabilities("FLUX.1 Fill", "FLUX.1 Fill", modes=(Mode.INPAINT,))
    with pytest.raises(InvalidRequest, match="FLUX.1 Fill cannot run the hires fix: it needs a model that runs image to image"):
        check(caps, hires_request("m"))


def test_unknown_or_latent_upscaler_is_said_before_any_work(shared_engine, model):
    events = []
    for name, words in (("no-such-gan", "no upscaler called no-such-gan"),
                        ("Latent (sharp)", r"no latent upscaler called Latent \(sharp\): the latent ones are Latent, ")):
        with pytest.raises(InvalidRequest, match=words):
            shared_engine.generate(hires_request(model, upscaler=name), on_progress=events.append)
    assert events == []


def test_latent_upscaler_refines_the_enlarged_latents_and_round_trips(shared_engine, model, tmp_path):
    """A1111's "Latent" hires upscaler: phase 1's latents are enlarged (no decode and encode between) and phase 2
    denoises from them: two stages, the enlarged size, another picture than a Lanczos resize of the first
    pass gives, "Hires upscaler: Latent" in the metadata, read back and regenerated exactly."""
    events = []
    result = shared_engine.generate(hires_request(model, upscaler="latent", hires_strength=0.75), on_progress=events.append)
    assert result.images[0].size == (128, 128) and {e.stages for e in events} == {2}
    assert [e.step for e in events if e.stage == 2] == [1, 2, 3]
    lanczos = shared_engine.generate(hires_request(model, hires_strength=0.75)).images[0]
    out = np.asarray(result.images[0], dtype=np.int16)
    assert np.abs(out - np.asarray(lanczos, dtype=np.int16)).mean() > 2
    nearest = shared_engine.generate(hires_request(model, upscaler="Latent (nearest-exact)", hires_strength=0.75))
    assert not np.array_equal(np.asarray(nearest.images[0]), out.astype(np.uint8))
    assert nearest.request.upscaler == "Latent (nearest-exact)"

    path = tmp_path / "latent.png"
    result.images[0].save(path, pnginfo=png_info(result, 0, app_version="test"))
    stored = read_metadata(str(path))
    assert "Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent," in stored.raw["parameters"]
    assert parse_a1111(stored.raw["parameters"]).fields["upscaler"] == "Latent"
    again = shared_engine.generate(stored.to_request(model=model))
    assert again.request.upscaler == "Latent"
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


def test_latent_upscaler_is_refused_in_one_line_where_it_cannot_run(shared_engine, model):
    from engine.core.hires import check
    from engine.families.base import capabilities

    caps = capabilities("FLUX.1 [dev]", "FLUX.1")  # its img2img pipeline takes a picture, not latents
    with pytest.raises(InvalidRequest, match=r"FLUX.1 \[dev\] cannot use the Latent upscaler: its image to image "
                                             "pass does not start from latents; use Lanczos or a GAN upscaler"):
        check(caps, hires_request("m", upscaler="Latent"))
    detail = GenerationRequest(prompt="x", model=model, mode="img2img", init_image=Image.new("RGB", (64, 64)), steps=2,
                               width=128, height=128, tile=64, tile_overlap=32, upscaler="Latent")
    with pytest.raises(InvalidRequest, match="Latent enlarges the hires fix's first pass only"):
        shared_engine.generate(detail)


def test_cli_generate_hires(tmp_path, capsys, model):
    out = tmp_path / "h.png"
    code = main(["generate", "--model", model, "--prompt", "a barn", "--steps", "4", "--width", "64", "--height", "64",
                 "--seed", "3", "--hires", "2", "--hires-steps", "4", "--hires-denoise", "0.5", "--out", str(out),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (128, 128)
    assert "Hires upscale: 2, Hires steps: 4, Hires upscaler: Lanczos" in read_metadata(str(out)).raw["parameters"]
    latent = tmp_path / "latent.png"
    assert main(["generate", "--model", model, "--prompt", "a barn", "--steps", "4", "--width", "64", "--height", "64",
                 "--seed", "3", "--hires", "2", "--hires-upscaler", "Latent", "--out", str(latent), "--device", "cpu"]) == 0
    assert Image.open(latent).size == (128, 128)
    assert "Hires upscaler: Latent," in read_metadata(str(latent)).raw["parameters"]
    capsys.readouterr()
    assert main(["generate", "--model", model, "--prompt", "x", "--hires-denoise", "0.3", "--out", str(out)]) == 2
    assert "--hires-denoise: give --hires SCALE too" in capsys.readouterr().err
