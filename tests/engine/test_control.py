"""Control inputs (ControlNet) on SD 1.5 and SDXL, as a user meets them: a control changes the image,
strength 0 and an empty step range change nothing (bit for bit), the step range matters, a control
model of the wrong family is refused in one line, control models are recognised in the usual folders
(and a single-file ControlNet is not taken for a checkpoint), the preprocessors give the expected
images on drawn shapes, and the metadata regenerates the same pixels.

The tiny ControlNets are the ``controlnet-sd15-canny`` / ``controlnet-sdxl-canny`` test models:
the real architecture built from the tiny test UNet's config, random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import ControlInput, GenerationRequest, InvalidRequest, Mode, ModelInfo, UnsupportedModel
from engine.cli import main
from engine.core import control
from engine.files.probe import check_model, inspect_model

CONTROL_FOR = {"sd15": "controlnet-sd15-canny", "sdxl": "controlnet-sdxl-canny"}


def square(size: int = 64, fill="white", ground="black") -> Image.Image:
    im = Image.new("RGB", (size, size), ground)
    ImageDraw.Draw(im).rectangle((size // 4, size // 4, 3 * size // 4 - 1, 3 * size // 4 - 1), fill=fill)
    return im


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model: Path, *controls, **fields):
    base = dict(prompt="a house on a hill", model=str(model), seed=11, steps=3, width=64, height=64)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, controls=tuple(controls)))


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_control_steers_and_zero_strength_or_empty_range_changes_nothing(engine, built, family):
    model, net = built(family), str(built(CONTROL_FOR[family]))
    edges = square()
    plain = pixels(make(engine, model))
    full = make(engine, model, ControlInput("canny", edges, model=net))
    zero = pixels(make(engine, model, ControlInput("canny", edges, model=net, strength=0.0)))
    never = pixels(make(engine, model, ControlInput("canny", edges, model=net, end=0.0)))
    half = pixels(make(engine, model, ControlInput("canny", edges, model=net, end=0.5)))

    assert np.abs(pixels(full) - plain).mean() > 5  # the control layer visibly changes the image
    assert np.array_equal(zero, plain)  # the ControlNet ran with weight 0: bit for bit the plain image
    assert np.array_equal(never, plain)  # it acts on no step
    assert not np.array_equal(half, plain) and not np.array_equal(half, pixels(full))  # the range matters
    # The result records what ran: model path and hash, and A1111's line.
    recorded = full.request.controls[0]
    assert recorded.model == str(Path(net).resolve()) and len(recorded.model_hash) == 10
    assert dict(full.params)["ControlNet 0"] == (
        f"Module: none, Model: {CONTROL_FOR[family]} [{recorded.model_hash}], Weight: 1, Guidance Start: 0, "
        "Guidance End: 1")


def test_single_file_controlnet_in_a1111_layout_steers_like_its_folder(engine, built):
    model = built("sd15")
    folder = make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-sd15-canny"))))
    single = make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-sd15-canny", "single-file"))))
    assert np.array_equal(pixels(folder), pixels(single))  # the same weights, converted offline from control_model.*


def test_sdxl_single_file_in_diffusers_layout_loads(engine, built):
    model = built("sdxl")
    folder = make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-sdxl-canny"))))
    single = make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-sdxl-canny", "single-file"))))
    assert np.array_equal(pixels(folder), pixels(single))


def test_two_controls_at_once(engine, built):
    model, net = built("sd15"), str(built("controlnet-sd15-canny"))
    one = pixels(make(engine, model, ControlInput("canny", square(), model=net)))
    other = ControlInput("canny", square(fill="black", ground="white"), model=net, strength=0.7)
    both = make(engine, model, ControlInput("canny", square(), model=net), other)
    assert not np.array_equal(pixels(both), one)
    assert [k for k, _ in both.params if k.startswith("ControlNet")] == ["ControlNet 0", "ControlNet 1"]
    # A second control with weight 0 changes nothing
    silent = make(engine, model, ControlInput("canny", square(), model=net), ControlInput("canny", square(), model=net, strength=0))
    assert np.array_equal(pixels(silent), one)


def test_control_in_img2img_and_inpaint_keeps_the_unmasked_pixels(engine, built):
    model, net = built("sd15"), str(built("controlnet-sd15-canny"))
    init = Image.new("RGB", (64, 64), (30, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 40, 40), fill=255)
    ctl = ControlInput("canny", square(), model=net)
    plain = pixels(make(engine, model, mode=Mode.IMG2IMG, init_image=init, strength=0.8))
    steered = pixels(make(engine, model, ctl, mode=Mode.IMG2IMG, init_image=init, strength=0.8))
    assert np.abs(steered - plain).mean() > 2
    painted = pixels(make(engine, model, ctl, mode=Mode.INPAINT, init_image=init, mask=mask, strength=1.0, mask_blur=0))
    outside = np.asarray(mask) == 0
    assert np.array_equal(painted[outside], np.asarray(init).astype(np.int16)[outside])


def test_wrong_family_control_model_is_refused_in_one_line_and_the_engine_goes_on(engine, built):
    model = built("sd15")
    with pytest.raises(InvalidRequest) as caught:
        make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-sdxl-canny"))))
    line = str(caught.value)
    assert "\n" not in line and "for SDXL" in line and "SD 1.x" in line
    assert make(engine, model).images  # still ready


def test_a_model_without_control_kinds_refuses_controls():
    caps = families.capabilities(ModelInfo("/x.safetensors", "x", "checkpoint", "sd2", "safetensors"))
    assert caps.control_kinds == ()
    with pytest.raises(InvalidRequest, match="takes no control inputs"):
        control.check(caps, (ControlInput("canny", square()),))
    sd15 = families.capabilities(ModelInfo("/x.safetensors", "x", "checkpoint", "sd1", "safetensors"))
    assert "canny" in sd15.control_kinds and "depth" in sd15.control_kinds


def test_no_control_model_in_the_library_says_where_to_put_one(engine, built):
    with pytest.raises(InvalidRequest) as caught:
        make(engine, built("sd15"), ControlInput("depth", square()))
    assert "models/ControlNet" in str(caught.value) and "\n" not in str(caught.value)


def test_request_fields_are_checked_in_one_line():
    for bad, words in ((dict(strength=2.5), "strength"), (dict(start=0.8, end=0.3), "starts"),
                       (dict(kind="hat"), "unknown control kind")):
        fields = dict(kind="canny", image=square()) | bad
        with pytest.raises(InvalidRequest, match=words):
            ControlInput(**fields)
    with pytest.raises(InvalidRequest, match="no image"):
        ControlInput("canny", None)


# ----------------------------------------------------------------------------- recognition


def test_control_models_are_recognised_and_not_taken_for_checkpoints(built, tmp_path):
    from engine.models import ModelLibrary

    single = built("controlnet-sd15-canny", "single-file")
    info = inspect_model(single)
    assert (info.kind, info.family, info.variant, info.format) == ("controlnet", "sd1", "canny", "safetensors")
    with pytest.raises(UnsupportedModel, match="control model"):
        check_model(single)  # not a checkpoint: one plain line
    folder = inspect_model(built("controlnet-sdxl-canny"))
    assert (folder.kind, folder.family, folder.variant, folder.format) == ("controlnet", "sdxl", "canny", "diffusers")
    assert families.family_for(info) is None  # no family runs it as a generator

    # In an A1111 install's models/ControlNet, a ComfyUI models/controlnet and the Hugging Face cache.
    a1111 = tmp_path / "stable-diffusion-webui"
    (a1111 / "models" / "ControlNet").mkdir(parents=True)
    (a1111 / "models" / "Stable-diffusion").mkdir()
    (a1111 / "models" / "ControlNet" / "control_v11p_sd15_depth.safetensors").write_bytes(single.read_bytes())
    snapshot = tmp_path / "hub" / "models--someone--controlnet-xl-canny" / "snapshots" / ("a" * 40)
    snapshot.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(built("controlnet-sdxl-canny"), snapshot)
    library = ModelLibrary([str(a1111), str(tmp_path / "hub")], include_defaults=False, state_dir=tmp_path / "state")
    entries = {e.name: e for e in library.scan()}
    depth = entries["control_v11p_sd15_depth"]
    assert (depth.kind, depth.family, depth.info.variant, depth.usable, depth.source) == (
        "controlnet", "sd1", "depth", True, "A1111")
    hub = entries["someone/controlnet-xl-canny"]
    assert (hub.kind, hub.family, hub.usable) == ("controlnet", "sdxl", True)
    assert control.choose(library, "sd1", "depth").path == depth.path
    assert control.choose(library, "sdxl", "canny").path == hub.path
    assert control.choose(library, "sd1", "canny") is None


def test_easel_models_lists_control_models(built, tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "cn.safetensors").write_bytes(built("controlnet-sd15-canny", "single-file").read_bytes())
    assert main(["models", "list", "--folder", str(folder), "--no-defaults", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "control model" in out and "SD1" in out and "cannot be used" not in out


# ----------------------------------------------------------------------------- preprocessors


def test_canny_finds_the_border_of_a_white_square():
    from engine import preprocess

    edges = np.asarray(preprocess.canny(square(64)).convert("L")) > 0
    ring = np.zeros((64, 64), bool)
    ring[14:51, 14:51] = True
    ring[19:46, 19:46] = False  # within a few pixels of the square's border (16..47)
    assert edges.any() and not edges[~ring].any()
    assert edges[16:48, 15:18].any() and edges[16:48, 46:49].any()  # both vertical sides


def test_scribble_makes_thick_white_strokes_on_black_from_a_pencil_sketch():
    from engine import preprocess

    sketch = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(sketch).line((20, 128, 236, 128), fill=(40, 40, 40), width=1)
    out = np.asarray(preprocess.scribble(sketch, thickness=5).convert("L"))
    assert set(np.unique(out)) <= {0, 255}
    column = out[:, 128]
    assert (column == 255).sum() == 5 and column[0] == 0  # one thin pencil line, thickened to 5 px
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # a paint layer: opaque strokes on transparency
    ImageDraw.Draw(layer).line((0, 32, 63, 32), fill=(255, 0, 0, 255))
    assert np.asarray(preprocess.scribble(layer, thickness=1).convert("L"))[32].min() == 255


def test_lineart_is_bright_on_edges_and_dark_on_flat_areas():
    from engine import preprocess

    out = np.asarray(preprocess.lineart(square(64)).convert("L"))
    assert out[16, 32] > 128 and out[32, 32] == 0 and out[2, 2] == 0


def test_tile_resizes_and_inpaint_makes_the_mask_transparent():
    from engine import preprocess

    assert preprocess.tile(square(64), (96, 80)).size == (96, 80)
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    out = preprocess.inpaint(square(64), mask)
    alpha = np.asarray(out.getchannel("A"))
    assert out.mode == "RGBA" and (alpha[:, :32] == 0).all() and (alpha[:, 32:] == 255).all()


def test_depth_without_a_depth_model_says_where_to_put_one(tmp_path):
    from engine import preprocess
    from engine.models import ModelLibrary

    library = ModelLibrary([str(tmp_path)], include_defaults=False)
    with pytest.raises(preprocess.NoDepthModel) as caught:
        preprocess.depth(square(), library=library)
    assert "depth/" in str(caught.value) and "--depth-model" in str(caught.value)


def test_depth_from_a_tiny_depth_anything_model_in_the_library(tmp_path):
    from engine import preprocess
    from engine.models import ModelLibrary

    _family, model = families.test_models()["depth-anything"]
    model.write(tmp_path / "models" / "depth" / "depth-anything-tiny", "diffusers", 0)
    library = ModelLibrary([str(tmp_path / "models")], include_defaults=False)
    out = preprocess.depth(square(64), library=library)
    a = np.asarray(out)
    assert out.size == (64, 64) and out.mode == "RGB" and a.min() == 0 and a.max() == 255


# ----------------------------------------------------------------------------- CLI and metadata


def test_cli_control_metadata_and_regenerate_bit_identical(built, tmp_path, capsys):
    models = tmp_path / "models" / "ControlNet"
    models.mkdir(parents=True)
    net = models / "control_sd15_canny.safetensors"
    net.write_bytes(built("controlnet-sd15-canny", "single-file").read_bytes())
    square(64).save(tmp_path / "shape.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["generate", "--model", str(built("sd15")), "--prompt", "a vase", "--steps", "3", "--seed", "9",
                 "--width", "64", "--height", "64", "--control", f"canny:{tmp_path / 'shape.png'}:0.8:0:0.9",
                 "--models-dir", str(tmp_path / "models"), "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["controls"][0]
    assert (stored["kind"], stored["model"], stored["strength"], stored["start"], stored["end"], stored["preprocessor"]) == (
        "canny", "control_sd15_canny.safetensors", 0.8, 0.0, 0.9, "canny")
    assert stored["image_png"] and len(stored["image_hash"]) == 10 and len(stored["model_hash"]) == 10
    assert (f'ControlNet 0: "Module: canny, Model: control_sd15_canny [{stored["model_hash"]}], Weight: 0.8, '
            'Guidance Start: 0, Guidance End: 0.9"') in parameters

    # A1111's text alone (as another tool would keep it) is read back with the ControlNet line.
    from engine.metadata import read_metadata
    from PIL.PngImagePlugin import PngInfo

    only_text = PngInfo()
    only_text.add_text("parameters", parameters)
    Image.open(first).save(tmp_path / "a1111.png", pnginfo=only_text)
    assert read_metadata(tmp_path / "a1111.png").extra["ControlNet 0"].startswith("Module: canny, Model: control_sd15_canny")

    capsys.readouterr()
    assert main(["info", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "control 0: canny, strength 0.8, steps 0-0.9, model control_sd15_canny.safetensors" in shown
    assert "ControlInput(" not in shown
    code = main(["regenerate", str(first), "--model", str(built("sd15")), "--models-dir", str(tmp_path / "models"),
                 "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))


def test_cli_preprocess_and_bad_control_options(tmp_path, capsys):
    square(64).save(tmp_path / "shape.png")
    assert main(["preprocess", "canny", str(tmp_path / "shape.png"), "--out", str(tmp_path / "edges.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "edges.png").convert("L"))[14:18, 32].max() == 255
    capsys.readouterr()
    assert main(["generate", "--model", "x", "--prompt", "p", "--control", "hat:shape.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown kind 'hat'" in err


def test_control_spec_keeps_colons_in_paths():
    from engine.cli_control import parse_spec

    assert parse_spec(r"canny:C:\pics\a.png:0.5") == ("canny", r"C:\pics\a.png", [0.5])
    assert parse_spec("depth:a.png:1:0.2:0.8") == ("depth", "a.png", [1.0, 0.2, 0.8])
    assert parse_spec("scribble:my:file.png") == ("scribble", "my:file.png", [])


def test_a_family_without_controls_refuses_them_through_the_engine(tmp_path):
    from engine.engine import Engine

    _family, model = families.test_models()["amused"]
    path = model.write(tmp_path / "amused", model.layouts[0], 0)
    with pytest.raises(InvalidRequest, match="takes no control inputs"):
        Engine(device="cpu").generate(GenerationRequest(prompt="a cat", model=str(path), steps=2, width=64, height=64,
                                                        controls=(ControlInput("canny", square()),)))


def test_a_cancel_while_the_controlnet_runs_stops_before_the_unet(engine, built):
    import threading

    from engine.api import Cancelled

    model, net = built("sd15"), str(built("controlnet-sd15-canny"))
    make(engine, model, ControlInput("canny", square(), model=net))  # loaded and kept
    controlnet = engine.runner.controls.loaded[str(Path(net).resolve())].model
    unet = engine.runner.base.unet
    cancel, unet_calls = threading.Event(), []
    first = controlnet.down_blocks[0].register_forward_hook(lambda *_: cancel.set())  # Esc while it runs
    later = unet.register_forward_pre_hook(lambda *_: unet_calls.append(1))  # the UNet called at all
    try:
        with pytest.raises(Cancelled):
            engine.generate(GenerationRequest(prompt="a cat", model=str(model), seed=1, steps=3, width=64, height=64,
                                              controls=(ControlInput("canny", square(), model=net),)), cancel=cancel)
    finally:
        first.remove()
        later.remove()
    assert unet_calls == []  # the step stopped inside the ControlNet, before the UNet ran
    assert not any(m._forward_pre_hooks for m in controlnet.modules())  # no hook left behind


def test_a_controlnet_folder_downloaded_as_fp16_variant_loads(engine, built, tmp_path):
    import shutil

    folder = tmp_path / "sd-controlnet-canny"
    shutil.copytree(built("controlnet-sd15-canny"), folder)
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / "diffusion_pytorch_model.fp16.safetensors")
    model = built("sd15")
    same = make(engine, model, ControlInput("canny", square(), model=str(built("controlnet-sd15-canny"))))
    variant = make(engine, model, ControlInput("canny", square(), model=str(folder)))
    assert inspect_model(folder).kind == "controlnet"
    assert np.array_equal(pixels(same), pixels(variant))
