"""Regions (regional prompting) on SD 1.5, SDXL and FLUX.1, as a user meets them: two regions with
different prompts change the image (and deterministically), each cross-attention layer (UNet) and the
joint attention (FLUX.1) is masked to the painted areas, a job without regions is exactly the image of
a model that never had one, weight 0 changes nothing, the regions are in the metadata and regenerate the
same pixels, and bad regions and a family without regions are one plain line each.

The tiny random-weight models spread a change across the whole image through self-attention, so where a
region acts is checked where it is decided: the attention given to each layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import families
from engine.api import GenerationRequest, InvalidRequest, MAX_REGIONS, ModelInfo, RegionInput
from engine.cli import main
from engine.core import prompt_policy, regions

W = 64


def half(side: str, size: int = W) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    box = (0, 0, size // 2 - 1, size - 1) if side == "left" else (size // 2, 0, size - 1, size - 1)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


TWO = (RegionInput(half("left"), "a red ball"), RegionInput(half("right"), "a blue cube on the grass"))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(np.int16)


def make(engine, model: Path, *areas, **fields):
    base = dict(prompt="a quiet landscape", model=str(model), seed=5, steps=2, width=W, height=W)
    base.update(fields)
    return engine.generate(GenerationRequest(**base, regions=tuple(areas)))


# ------------------------------------------------------------------------------------ the request


def test_a_region_keeps_its_mask_through_json_and_bad_regions_are_one_line():
    mask = half("left")
    mask.putpixel((40, 10), 128)  # a partly covered pixel survives too
    region = RegionInput(mask.convert("RGB"), "a red ball", 0.6)
    assert region.mask.mode == "L"
    request = GenerationRequest(prompt="p", regions=(region, {"mask": half("right"), "prompt": "sky"}))
    data = json.loads(json.dumps(request.to_dict()))
    stored = data["regions"][0]
    assert stored["prompt"] == "a red ball" and stored["weight"] == 0.6 and len(stored["mask_hash"]) == 10
    back = GenerationRequest.from_dict(data)
    assert [r.prompt for r in back.regions] == ["a red ball", "sky"]
    assert np.array_equal(np.asarray(back.regions[0].mask), np.asarray(mask))
    assert "regions" not in GenerationRequest(prompt="p").to_dict()  # a plain recipe is as before

    for bad, words in (
        (dict(mask=Image.new("L", (W, W), 0), prompt="a cat"), "has no area"),
        (dict(mask=half("left"), prompt="  "), "has no prompt"),
        (dict(mask=half("left"), prompt="a cat", weight=1.5), "weight must be from 0 to 1"),
        (dict(mask="left.png", prompt="a cat"), "has no mask"),
    ):
        with pytest.raises(InvalidRequest) as info:
            GenerationRequest(prompt="p", regions=(bad,))
        assert words in str(info.value) and "\n" not in str(info.value) and info.value.field == "regions"
    with pytest.raises(InvalidRequest, match=f"at most {MAX_REGIONS} regions"):
        GenerationRequest(prompt="p", regions=(TWO[0],) * (MAX_REGIONS + 1))


def test_shares_stack_regions_like_layers_and_add_up_to_one():
    top = RegionInput(Image.new("L", (W, W), 255), "top", 0.5)  # covers everything, half weight
    base_share, under, over = regions.shares((TWO[0], top), GenerationRequest(prompt="p", width=W, height=W), None, (W, W))
    assert np.allclose(base_share + under + over, 1.0)
    assert np.allclose(over, 0.5)  # the upper region takes its weight first ...
    assert np.allclose(under[:, : W // 2], 0.5) and np.allclose(under[:, W // 2:], 0.0)  # ... the lower what is left
    assert np.allclose(base_share[:, : W // 2], 0.0) and np.allclose(base_share[:, W // 2:], 0.5)


def test_region_prompts_go_through_the_prompt_policy():
    notices: list[str] = []
    text = prompt_policy.prepare("a house", "", "FLUX.1", loras=True, weighting=False, notices=notices,
                                 regions=("a (red:1.3) door <lora:wood:0.7>",))
    assert text.regions == ("a red door",)
    assert any("region's prompt takes no LoRAs" in n and "<lora:wood>" in n for n in notices)
    assert any("Prompt weights" in n for n in notices) and not text.loras


def test_a_family_without_regions_refuses_them_in_one_line():
    caps = families.capabilities(ModelInfo(path="x", name="x", kind="checkpoint", family="amused", format="diffusers",
                                           variant="amused"))
    assert not caps.regions
    with pytest.raises(InvalidRequest) as info:
        caps.check_request(GenerationRequest(prompt="p", width=W, height=W, regions=TWO))
    assert "takes no regions" in str(info.value) and "\n" not in str(info.value)
    for family in ("sd1", "sdxl", "flux1"):
        assert families.capabilities(ModelInfo(path="x", name="x", kind="checkpoint", family=family,
                                               format="diffusers")).regions


# ----------------------------------------------------------------------------- UNet families


def _two_regions_behave(engine, model):
    plain = pixels(make(engine, model))
    two = make(engine, model, *TWO)
    assert np.abs(pixels(two) - plain).mean() > 1  # the regions show
    assert np.array_equal(pixels(make(engine, model, *TWO)), pixels(two))  # deterministic
    swapped = make(engine, model, RegionInput(half("left"), TWO[1].prompt), RegionInput(half("right"), TWO[0].prompt))
    assert np.abs(pixels(swapped) - pixels(two)).mean() > 0.5  # which prompt goes where matters
    assert np.array_equal(pixels(make(engine, model)), plain)  # the next plain job: bit for bit as before
    return plain, two


@pytest.mark.slow
def test_sd15_two_regions_change_the_image_and_a_plain_job_stays_bit_identical(engine, built):
    model = built("sd15")
    plain, two = _two_regions_behave(engine, model)
    unet = engine.runner.base.unet
    assert not any(type(p).__name__ == "RegionalAttnProcessor" for p in unet.attn_processors.values())
    zero = make(engine, model, RegionInput(half("left"), "a red ball", 0.0))
    assert np.array_equal(pixels(zero), plain)  # weight 0 acts on nothing
    assert dict(two.params)["Region 2"] == "a blue cube on the grass (50% of the image)"


@pytest.mark.slow
def test_sdxl_two_regions_change_the_image_and_a_plain_job_stays_bit_identical(engine, built):
    _two_regions_behave(engine, built("sdxl"))


def test_each_unet_cross_attention_attends_the_painted_area_to_the_region_prompt(engine, built):
    """Every cross-attention layer of the UNet, at its own resolution, under CFG: outside the area (and in
    the negative half of the batch) the output is exactly the main prompt's; inside it is the region's."""
    import torch
    from diffusers.models.attention_processor import Attention

    model = built("sd15")
    make(engine, model)  # loaded
    unet = engine.runner.base.unet
    own = dict(unet.attn_processors)
    seen = []

    def record(module, args, kwargs, output):
        if kwargs.get("encoder_hidden_states") is not None:
            seen.append((module, args[0] if args else kwargs["hidden_states"], kwargs["encoder_hidden_states"], output))

    cross = [m for name, m in unet.named_modules() if isinstance(m, Attention) and name.endswith("attn2")]
    hooks = [m.register_forward_hook(record, with_kwargs=True) for m in cross]
    try:
        make(engine, model, TWO[0], steps=1, guidance_scale=7.0)
    finally:
        for h in hooks:
            h.remove()
    assert {id(m) for m, *_ in seen} == {id(m) for m in cross}  # every layer, each resolution
    resolutions = set()
    for module, hidden, text, output in seen:
        tokens = hidden.shape[1]
        side = int(round(tokens ** 0.5))
        resolutions.add(side)
        inside = torch.zeros(side, side, dtype=torch.bool)
        inside[:, : side // 2] = True
        inside = inside.flatten()
        processor = own[next(n for n, m in unet.named_modules() if m is module) + ".processor"]
        with torch.inference_mode():
            as_before = processor(module, hidden, encoder_hidden_states=text)
        assert torch.equal(output[0], as_before[0])  # the negative prompt's half: unchanged
        assert torch.equal(output[1][~inside], as_before[1][~inside])  # outside the area: the main prompt's
        assert not torch.allclose(output[1][inside], as_before[1][inside])  # inside: another prompt's
    assert len(resolutions) >= 2


# ------------------------------------------------------------------------------------- FLUX.1


def test_flux_two_regions_mask_the_joint_attention_and_a_plain_job_stays_bit_identical(engine, built):
    from diffusers.models.transformers.transformer_flux import FluxAttention

    model = built("flux1-dev")
    size = 128  # 8 x 8 image tokens
    areas = (RegionInput(half("left", size), "a red ball"), RegionInput(half("right", size), "a blue cube"))
    plain = make(engine, model, width=size, height=size)
    masks = []
    transformer = engine.runner.base.transformer
    hooks = [m.register_forward_pre_hook(lambda _m, _a, kw: masks.append(kw.get("attention_mask")), with_kwargs=True)
             for m in transformer.modules() if isinstance(m, FluxAttention)]
    try:
        two = make(engine, model, *areas, width=size, height=size)
    finally:
        for h in hooks:
            h.remove()
    assert np.abs(pixels(two) - pixels(plain)).mean() > 0.02
    assert np.array_equal(pixels(make(engine, model, *areas, width=size, height=size)), pixels(two))
    again = make(engine, model, width=size, height=size)
    assert np.array_equal(pixels(again), pixels(plain))  # no mask, no region tokens: as before
    one = np.abs(pixels(make(engine, model, areas[0], width=size, height=size)) - pixels(plain)).mean(axis=2)
    assert one[:, : size // 2].mean() > 1.5 * one[:, size // 2:].mean()  # one region changes its own half most
    assert dict(two.params)["Region 1"] == "a red ball (50% of the image)"

    assert masks and all(m is not None and m is masks[0] for m in masks)  # every joint attention, one mask
    bias = masks[0][0, 0].float()
    tokens = engine.runner._tokens(engine.runner.base)
    text = 3 * tokens
    assert bias.shape == (text + 64, text + 64)
    image = bias[text:]  # the image tokens' rows, row-major on the 8 x 8 grid
    left = (np.arange(64) % 8) < 4
    main_, first, second = (image[:, i * tokens:(i + 1) * tokens] for i in range(3))
    assert bool((first[left] == 0).all()) and bool(np.isneginf(first[~left].numpy()).all())
    assert bool((second[~left] == 0).all()) and bool(np.isneginf(second[left].numpy()).all())
    assert bool(np.isneginf(main_.numpy()).all())  # the whole image is in one region or the other
    assert bool((bias[text:, text:] == 0).all())  # image tokens see each other freely
    assert bool(np.isneginf(bias[:tokens, tokens:2 * tokens].numpy()).all())  # prompts do not see each other


# ---------------------------------------------------------------------- metadata and the CLI


def test_cli_regions_metadata_and_regenerate_bit_identical(built, tmp_path, capsys):
    half("left").save(tmp_path / "left.png")
    half("right").save(tmp_path / "right.png")
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["generate", "--model", str(built("sd15")), "--prompt", "a quiet landscape", "--steps", "2",
                 "--seed", "9", "--width", "64", "--height", "64", "--region", f"{tmp_path / 'left.png'}:a red ball",
                 "--region", f"{tmp_path / 'right.png'}:a blue cube: shiny", "--region-weight", "0.75",
                 "--out", str(first), *data])
    assert code == 0, capsys.readouterr().err
    with Image.open(first) as png:
        parameters, recipe = png.text["parameters"], json.loads(png.text["easel"])
    stored = recipe["request"]["regions"]
    assert [(r["prompt"], r["weight"]) for r in stored] == [("a red ball", 0.75), ("a blue cube: shiny", 1.0)]
    assert stored[0]["mask_png"] and len(stored[0]["mask_hash"]) == 10
    assert 'Region 1: "a red ball (50% of the image, weight 0.75)"' in parameters
    assert 'Region 2: "a blue cube: shiny (50% of the image)"' in parameters
    capsys.readouterr()
    assert main(["info", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "region 1: a red ball, weight 0.75, mask 64x64" in shown and "region 2: a blue cube: shiny" in shown
    code = main(["regenerate", str(first), "--model", str(built("sd15")), "--out", str(again), *data])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))

    for spec, words in ((f"{tmp_path / 'nothing.png'}:a cat", "no mask picture found"),
                        (f"{tmp_path / 'left.png'}:", "has no prompt"), ("left", "write MASK:PROMPT")):
        capsys.readouterr()
        code = main(["generate", "--model", str(built("sd15")), "--prompt", "p", "--region", spec,
                     "--out", str(tmp_path / "x.png"), *data])
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1, err


def test_the_detail_upscale_gives_each_tile_the_part_of_the_regions_over_it():
    left, right = (0, 0, 64, 128), (72, 0, 56, 128)  # tiles of the 64 px image enlarged to 128 px
    first = regions.for_tile(TWO[:1], (128, 128), left)
    assert len(first) == 1 and first[0].mask.size == (64, 128) and first[0].prompt == "a red ball"
    assert np.asarray(first[0].mask)[:, :60].min() == 255  # the tile lies in the region (its edge bilinear)
    assert regions.for_tile(TWO[:1], (128, 128), right) == ()  # a tile the region does not reach: none
