"""The `easel` CLI as a user runs it: make a model, generate, inspect, regenerate, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_make_model_generate_info_regenerate_round_trip(tmp_path, capsys, no_network):
    code, out, _ = run(capsys, "make-test-model", str(tmp_path / "tiny"), "--family", "sd15")
    assert code == 0 and (tmp_path / "tiny" / "model_index.json").is_file()
    model = str(tmp_path / "tiny")

    first = tmp_path / "first.png"
    prompt = 'a castle, "golden hour": dusk\nsecond line, ünïcode'
    code, out, err = run(capsys, "generate", "--model", model, "--prompt", prompt, "--negative", "blurry, low",
                         "--steps", "3", "--seed", "77", "--width", "64", "--height", "64", "--sampler",
                         "DPM++ 2M Karras", "--cfg", "6.5", "--out", str(first))
    assert code == 0, err
    assert first.is_file() and "seed 77" in out

    code, out, _ = run(capsys, "info", str(first), "--json")
    info = json.loads(out)
    assert info["source"] == "easel"
    r = info["request"]
    assert (r["prompt"], r["negative_prompt"], r["seed"], r["steps"], r["sampler"], r["guidance_scale"]) == (
        prompt, "blurry, low", 77, 3, "DPM++ 2M Karras", 6.5)
    assert (r["width"], r["height"]) == (64, 64)
    assert len(info["model_hash"]) == 10

    again = tmp_path / "again.png"
    code, _, err = run(capsys, "regenerate", str(first), "--model", model, "--out", str(again))
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    assert no_network == []


def test_generate_without_out_lands_in_the_data_folder(tmp_path, capsys, tiny_models):
    data = tmp_path / "data"
    code, out, err = run(capsys, "generate", "--data-dir", str(data), "--model", str(tiny_models.get()),
                         "--prompt", "a tree", "--steps", "2", "--width", "64", "--height", "64", "--batch", "2")
    assert code == 0, err
    files = sorted((data / "outputs").glob("*.png"))
    assert len(files) == 2


def test_inpaint_command_keeps_outside_pixels(tmp_path, capsys, tiny_models):
    init = Image.new("RGB", (90, 60), (200, 40, 40))
    mask = Image.new("L", (90, 60), 0)
    ImageDraw.Draw(mask).rectangle((30, 10, 60, 40), fill=255)
    init.save(tmp_path / "init.png")
    mask.save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "inpaint", "--model", str(tiny_models.get()), "--prompt", "a window",
                       "--init", str(tmp_path / "init.png"), "--mask", str(tmp_path / "mask.png"),
                       "--steps", "2", "--seed", "1", "--only-masked", "--padding", "8",
                       "--width", "64", "--height", "64", "--out", str(out))
    assert code == 0, err
    result = np.asarray(Image.open(out))
    outside = np.asarray(mask) == 0
    assert result.shape[:2] == (60, 90)
    assert np.array_equal(result[outside], np.asarray(init)[outside])


def test_no_metadata_option_writes_no_prompt(tmp_path, capsys, tiny_models):
    out = tmp_path / "plain.png"
    code, _, err = run(capsys, "generate", "--model", str(tiny_models.get()), "--prompt", "secret prompt",
                       "--steps", "2", "--width", "64", "--height", "64", "--out", str(out), "--no-metadata")
    assert code == 0, err
    image = Image.open(out)
    assert "secret" not in json.dumps(dict(image.info), default=str)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["generate", "--model", "MISSING", "--prompt", "x", "--width", "64", "--height", "64"], "MISSING"),
        (["generate", "--model", "MODEL", "--prompt", "x", "--width", "100", "--height", "64"], "width"),
        (["generate", "--model", "MODEL", "--prompt", "x", "--steps", "0", "--width", "64", "--height", "64"], "steps"),
        (["generate", "--model", "MODEL", "--prompt", "x", "--sampler", "Heun"], "sampler"),
        (["img2img", "--model", "MODEL", "--prompt", "x", "--init", "NOPE.png"], "no such file"),
        (["info", "NOPE.png"], "no such file"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, tiny_models, argv, words):
    argv = [a.replace("MODEL", str(tiny_models.get())).replace("NOPE.png", str(tmp_path / "nope.png")) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("easel: ") and words in lines[0]
    assert "Traceback" not in err


def test_img2img_with_too_few_steps_for_its_strength_says_what_to_use(tmp_path, capsys, tiny_models):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (90, 120, 30)).save(init)
    code, _, err = run(capsys, "img2img", "--model", str(tiny_models.get()), "--prompt", "x", "--init", str(init),
                       "--steps", "1", "--strength", "0.75", "--out", str(tmp_path / "o.png"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("easel: steps:")  # (lines before: the fixture's first build)
    assert "at least 2 steps" in err and not (tmp_path / "o.png").exists()


def test_a_file_that_is_not_an_image_says_cannot_read(tmp_path, capsys, tiny_models):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"this is not a png")
    code, _, err = run(capsys, "img2img", "--model", str(tiny_models.get()), "--prompt", "x", "--init", str(bad))
    assert code == 2 and "cannot read image" in err and len(err.strip().splitlines()) == 1


def test_pickle_model_refused_from_cli_without_traceback(tmp_path):
    evil = tmp_path / "model.ckpt"
    evil.write_bytes(b"\x80\x04\x95" + b"\x00" * 32)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "generate", "--model", str(evil), "--prompt", "x",
                           "--width", "64", "--height", "64"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and ".safetensors" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_selftest_passes(capsys):
    code, out, _ = run(capsys, "selftest", "--device", "cpu")
    assert code == 0, out
    assert "7/7 checks passed" in out


def test_gallery_commands_list_search_import_and_generate_into_the_library(tmp_path, capsys, tiny_models):
    from engine.library import Library

    data = tmp_path / "data"
    code, out, err = run(capsys, "generate", "--data-dir", str(data), "--model", str(tiny_models.get()),
                         "--prompt", "a lighthouse\nat dusk", "--steps", "2", "--width", "64", "--height", "64",
                         "--seed", "31337")
    assert code == 0, err
    with Library(data / "outputs") as lib:  # indexed when saved, not only after a reconcile
        assert [e.seed for e in lib.query()] == [31337]
    other = tmp_path / "from elsewhere"
    other.mkdir()
    Image.new("RGB", (64, 64)).save(other / "plain.png")
    (other / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "--data-dir", str(data), "gallery", "import", str(other))
    assert code == 0 and "1 image(s) imported" in err
    code, out, err = run(capsys, "gallery", "list", "--data-dir", str(data), "--search", "lighthouse")
    assert code == 0 and out.count("\n") == 1 and "31337" in out and "a lighthouse at dusk" in out
    code, out, _ = run(capsys, "gallery", "list", "--data-dir", str(data), "--json")
    rows = json.loads(out)
    assert [r["prompt"] for r in rows] == ["", "a lighthouse\nat dusk"]  # the import is newer
    assert all(Path(r["path"]).is_file() for r in rows)
    code, _, err = run(capsys, "gallery", "list", "--data-dir", str(data), "--since", "yesterday")
    assert code == 2 and err.count("\n") == 1 and "YYYY-MM-DD" in err
    code, _, err = run(capsys, "gallery", "import", "--data-dir", str(data), str(tmp_path / "missing.png"))
    assert code == 2 and "nothing was imported" in err


def test_inpaint_result_carries_its_mask_so_regenerate_needs_only_the_source(tmp_path, capsys, tiny_models):
    init = Image.new("RGB", (90, 60), (40, 90, 200))  # not a multiple of 8: padded to 96x64, cropped back
    mask = Image.new("L", (90, 60), 0)
    ImageDraw.Draw(mask).ellipse((20, 10, 70, 50), fill=255)
    init.save(tmp_path / "init.png")
    mask.save(tmp_path / "mask.png")
    out, again = tmp_path / "out.png", tmp_path / "again.png"
    code, _, err = run(capsys, "inpaint", "--model", str(tiny_models.get()), "--prompt", "a moon",
                       "--init", str(tmp_path / "init.png"), "--mask", str(tmp_path / "mask.png"),
                       "--steps", "2", "--seed", "5", "--out", str(out))
    assert code == 0, err
    with Image.open(out) as png:
        assert png.size == (90, 60)
        assert "easel-mask" in png.text
    code, _, err = run(capsys, "regenerate", str(out), "--model", str(tiny_models.get()),
                       "--init", str(tmp_path / "init.png"), "--out", str(again))
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


@pytest.fixture(scope="module")
def kontext_model(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("kontext") / "flux1-kontext"
    assert main(["make-test-model", str(dest), "--family", "flux1-kontext"]) == 0
    return dest


def test_edit_command_edits_by_instruction_and_with_a_mask_only_there(tmp_path, capsys, kontext_model):
    rng = np.random.default_rng(3)
    source = Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), "RGB")  # off the 16 px grid
    source.save(tmp_path / "photo.png")
    mask = Image.new("L", (90, 60), 0)
    ImageDraw.Draw(mask).rectangle((20, 10, 59, 39), fill=255)
    mask.save(tmp_path / "mask.png")

    out = tmp_path / "stormy.png"
    code, stdout, err = run(capsys, "edit", str(tmp_path / "photo.png"), "make the sky stormy", "--model",
                            str(kontext_model), "--steps", "2", "--seed", "18446744073709551615", "--out", str(out))
    assert code == 0, err
    assert "seed 18446744073709551615" in stdout
    edited = np.asarray(Image.open(out))
    assert edited.shape == (60, 90, 3) and not np.array_equal(edited, np.asarray(source))
    code, stdout, _ = run(capsys, "info", str(out), "--json")
    r = json.loads(stdout)["request"]
    assert (r["prompt"], r["mode"], r["guidance_scale"], r["steps"]) == ("make the sky stormy", "img2img", 2.5, 2)

    masked = tmp_path / "masked.png"
    code, _, err = run(capsys, "edit", str(tmp_path / "photo.png"), "make the sky stormy", "--model",
                       str(kontext_model), "--mask", str(tmp_path / "mask.png"), "--mask-blur", "0", "--steps", "2",
                       "--seed", "5", "--guidance", "4", "--out", str(masked))
    assert code == 0, err
    result, keep = np.asarray(Image.open(masked)).astype(int), np.asarray(mask) == 0
    assert np.array_equal(result[keep], np.asarray(source).astype(int)[keep])  # only the masked area changes
    assert not np.array_equal(result[~keep], np.asarray(source).astype(int)[~keep])
    code, stdout, _ = run(capsys, "info", str(masked), "--json")
    r = json.loads(stdout)["request"]
    assert (r["mode"], r["guidance_scale"]) == ("inpaint", 4.0)


def test_edit_with_a_model_that_does_not_edit_by_instruction_says_which_do(tmp_path, capsys, tiny_models):
    Image.new("RGB", (64, 64), (90, 120, 30)).save(tmp_path / "photo.png")
    code, _, err = run(capsys, "edit", str(tmp_path / "photo.png"), "make it blue", "--model",
                       str(tiny_models.get()), "--out", str(tmp_path / "o.png"))
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line == "easel: sd15 (SD 1.x) is not an instruction-edit model: use FLUX.1 Kontext, FLUX.2 [klein], FLUX.2 [dev] or Qwen-Image-Edit"
    assert not (tmp_path / "o.png").exists()
    code, _, err = run(capsys, "edit", str(tmp_path / "photo.png"), " ", "--model", str(tiny_models.get()))
    assert code == 2 and "say what to change" in err.strip().splitlines()[-1]
