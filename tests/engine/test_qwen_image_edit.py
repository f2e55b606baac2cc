"""Qwen-Image-Edit and Edit Plus as a user meets them: an instruction edit of the input image from the
CLI (``easel img2img``), Plus with extra reference images (recorded by count and hash), the edit
within a mask, and new images refused in one line. The contract suite covers the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import families
from engine.api import GenerationRequest, InvalidRequest, Mode
from engine.cli import main
from engine.files.probe import check_model
from engine.metadata import read_metadata


@pytest.fixture(scope="module")
def edits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen-edit")
    out = {}
    for name in ("qwen-image-edit", "qwen-image-edit-plus"):
        assert main(["make-test-model", str(root / name), "--family", name]) == 0
        out[name] = root / name
    return out


def _image(path: Path, colour, size=(64, 64)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def test_they_are_instruction_editors_that_make_no_new_images(edits):
    for name, label in (("qwen-image-edit", "Qwen-Image-Edit"), ("qwen-image-edit-plus", "Qwen-Image-Edit Plus")):
        caps = families.capabilities(check_model(edits[name]))
        assert caps.label == label and caps.instruction_edit and Mode.TXT2IMG not in caps.modes
        assert "edits an image by instruction" in caps.refusal(Mode.TXT2IMG)
        assert "strength" not in caps.parameters
    assert families.capabilities(check_model(edits["qwen-image-edit-plus"])).references == 2
    assert families.capabilities(check_model(edits["qwen-image-edit"])).references == 0


def test_the_cli_edits_an_image_by_instruction_with_a_reference(edits, tmp_path, capsys, no_network):
    source = _image(tmp_path / "in.png", (200, 40, 40))
    reference = _image(tmp_path / "hat.png", (20, 40, 200), (48, 64))
    out = tmp_path / "edited.png"
    code = main(["img2img", "--model", str(edits["qwen-image-edit-plus"]), "--init", str(source), "--reference",
                 str(reference), "--prompt", "put the blue hat of image 2 on it", "--steps", "2", "--seed", "3",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    image = Image.open(out)
    assert image.size == (64, 64) and np.asarray(image.convert("RGB")).std() > 1
    meta = read_metadata(out)
    assert meta.extra.get("Reference images") == "1" and len(meta.extra.get("Reference hashes", "")) == 10

    # The reference picture is stored in the file (as every reference image is): regenerating needs only the
    # image it edited, and makes the same pixels.
    again = tmp_path / "again.png"
    regen = ["regenerate", str(out), "--model", str(edits["qwen-image-edit-plus"]), "--init", str(source),
             "--out", str(again)]
    assert main(regen) == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(image))

    code = main(["generate", "--model", str(edits["qwen-image-edit"]), "--prompt", "a cat", "--out",
                 str(tmp_path / "new.png")])
    err = capsys.readouterr().err
    assert code != 0 and "edits an image by instruction" in err and "Traceback" not in err


def test_reference_images_are_refused_where_the_model_takes_none(edits, tmp_path, capsys):
    source = _image(tmp_path / "in.png", (200, 40, 40))
    code = main(["img2img", "--model", str(edits["qwen-image-edit"]), "--init", str(source), "--reference",
                 str(source), "--prompt", "make it blue", "--steps", "2", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code != 0 and "takes no reference images" in err and "\n" not in err.strip()
    with pytest.raises(InvalidRequest):
        GenerationRequest(prompt="x", references=(Image.new("RGB", (8, 8)),))  # no image to edit


def test_the_edit_within_a_mask_keeps_the_rest_of_the_image(edits):
    from engine.engine import Engine

    rng = np.random.default_rng(1)
    source = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    result = Engine(device="cpu").generate(GenerationRequest(
        prompt="a hat", model=str(edits["qwen-image-edit"]), mode=Mode.INPAINT, init_image=source, mask=mask,
        seed=2, steps=2, width=64, height=64, mask_blur=0))
    out, before = np.asarray(result.images[0]).astype(int), np.asarray(source).astype(int)
    assert np.array_equal(out[:8, :8], before[:8, :8])  # outside the mask: untouched
    assert np.abs(out[24:40, 24:40] - before[24:40, 24:40]).mean() > 5  # inside: edited


def test_the_instruction_is_encoded_with_the_input_image(edits, monkeypatch):
    """Qwen2.5-VL reads an edit's instruction together with the image: the prompt must not be encoded
    from the text alone (the prompt cache's text-only embeddings would silently drop the image)."""
    from diffusers import QwenImageEditPipeline

    from engine.engine import Engine

    seen = []
    original = QwenImageEditPipeline.encode_prompt

    def encode_prompt(self, prompt, image=None, *args, **kwargs):
        seen.append(image is not None)
        return original(self, prompt, image, *args, **kwargs)

    monkeypatch.setattr(QwenImageEditPipeline, "encode_prompt", encode_prompt)
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    result = Engine(device="cpu").generate(GenerationRequest(
        prompt="make it blue", model=str(edits["qwen-image-edit"]), mode=Mode.IMG2IMG, init_image=source,
        steps=2, width=64, height=64, seed=1))
    assert result.images[0].size == (64, 64)
    assert seen and all(seen)
