"""engine.metadata: what we write reads back exactly; what other tools write reads to the right fields."""

from __future__ import annotations

import io
import json
from pathlib import Path
import struct

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine import metadata
from engine.api import SAMPLERS, GenerationRequest, ModelInfo, Result, RuntimeSettings, Timings
from engine.metadata import ImageMetadata, a1111_parameters, map_sampler, parse_a1111, png_info, read_metadata

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _image(size=(64, 64), color="gray"):
    return Image.new("RGB", size, color)


def _mask(size=(64, 64)):
    mask = Image.new("L", size, 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


def _result(request: GenerationRequest, seeds=(1234,), model_name="dream, v2: final", model_hash="6ce0161689"):
    return Result(
        images=tuple(_image() for _ in seeds),
        seeds=tuple(seeds),
        request=request.replace(seed=seeds[0]),
        model=ModelInfo(path="/models/dream.safetensors", name=model_name, kind="checkpoint", family="sd1",
                        format="safetensors"),
        model_hash=model_hash,
        settings=RuntimeSettings(device="cpu", dtype="float32", preset="balanced"),
        timings=Timings(load=0.5, denoise=2.0, total=3.25),
    )


def _png_bytes(info: PngInfo | None = None, image=None) -> bytes:
    buffer = io.BytesIO()
    (image or _image()).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _png_with_texts(**texts: str) -> bytes:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    return _png_bytes(info)


def _chunks(png: bytes) -> list[tuple[str, str]]:
    """(chunk type, keyword) for every chunk of a PNG."""
    out, pos = [], 8
    while pos < len(png):
        length, ctype = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        keyword = data.split(b"\0", 1)[0].decode("latin-1") if ctype in (b"tEXt", b"zTXt", b"iTXt") else ""
        out.append((ctype.decode(), keyword))
        pos += 12 + length
    return out


def _save_and_read(result: Result, index: int = 0, **kwargs) -> tuple[bytes, ImageMetadata]:
    png = _png_bytes(png_info(result, index, app_version="0.1.0", **kwargs), image=result.images[index])
    return png, read_metadata(io.BytesIO(png))


TRICKY = GenerationRequest(
    prompt='a "castle", on a hill: golden hour\nsecond line, (detail:1.2) <lora:film grain:0.8>',
    negative_prompt="blurry, low quality\nugly: yes",
    seed=42,
    steps=30,
    guidance_scale=6.5,
    width=512,
    height=768,
    sampler="DPM++ 2M Karras",
    model="/models/dream.safetensors",
)


# --------------------------------------------------------------------------------------------
# writing and reading back our own files
# --------------------------------------------------------------------------------------------


def test_round_trip_regenerates_exactly_this_image():
    result = _result(TRICKY, seeds=(1000, 1001, 1002))
    png, meta = _save_and_read(result, index=1)

    assert meta.source == "easel"
    assert meta.warnings == ()
    assert meta.fields["seed"] == 1001
    assert meta.fields["batch_count"] == 1
    assert meta.model_name == "dream, v2: final"
    assert meta.model_hash == "6ce0161689"
    assert meta.extra["Version"] == "easel 0.1.0"
    # The model is recorded by file name: a shared image never shows the user's folders.
    assert meta.extra["Model file"] == "dream.safetensors"
    assert "/models/" not in json.dumps(meta.raw)
    assert meta.to_request() == TRICKY.replace(seed=1001, batch_count=1, model="dream.safetensors")


def test_a_64_bit_seed_round_trips_through_our_chunk_and_a1111_text():
    big = 2**64 - 1
    result = _result(TRICKY, seeds=(big,))
    png, meta = _save_and_read(result)
    assert meta.fields["seed"] == big and meta.warnings == ()
    assert meta.to_request().seed == big
    text = a1111_parameters(TRICKY, big, model_name="dream", model_hash="")
    again = parse_a1111(text)
    assert again.fields["seed"] == big and again.warnings == ()
    # Written as a decimal with ".0" by some tools: still whole (not through a float).
    assert parse_a1111("x\nSteps: 20, Seed: 18446744073709551615.0").fields["seed"] == big


def test_a_seed_above_64_bits_is_wrapped_with_a_warning():
    meta = parse_a1111(f"x\nSteps: 20, Seed: {2**64 + 7}")
    assert meta.fields["seed"] == 7
    assert any("2**64" in w or "18446744073709551615" in w for w in meta.warnings)


def test_a1111_text_alone_reads_back_every_field():
    text = a1111_parameters(TRICKY, 42, model_name="dream, v2: final", model_hash="6ce0161689",
                            extra={"Clip skip": "2", "Lora hashes": "film grain: 0123456789ab"})
    lines = text.split("\n")
    assert lines[-1].startswith("Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, "
                                "Size: 512x768, Model hash: 6ce0161689, Model: \"dream, v2: final\"")
    assert lines[-1].endswith(', Clip skip: 2, Lora hashes: "film grain: 0123456789ab"')

    meta = parse_a1111(text)
    assert meta.source == "a1111"
    assert meta.warnings == ()
    assert meta.fields == {
        "prompt": TRICKY.prompt, "negative_prompt": TRICKY.negative_prompt, "steps": 30, "guidance_scale": 6.5,
        "seed": 42, "width": 512, "height": 768, "sampler": "DPM++ 2M Karras", "mode": "txt2img",
        "clip_skip": 2,  # a request field since issue #6: regenerate reproduces it
    }
    assert meta.model_name == "dream, v2: final"
    assert meta.extra["Lora hashes"] == "film grain: 0123456789ab"
    assert meta.extra["Clip skip"] == "2"


def test_unicode_parameters_use_itxt_and_latin1_uses_text():
    unicode_request = TRICKY.replace(prompt="城堡 on a hill 🏰, «nuit»", negative_prompt="")
    png, meta = _save_and_read(_result(unicode_request))
    assert ("iTXt", "parameters") in _chunks(png)
    assert ("iTXt", "easel") in _chunks(png)
    assert meta.fields["prompt"] == "城堡 on a hill 🏰, «nuit»"
    assert parse_a1111(meta.raw["parameters"]).fields["prompt"] == "城堡 on a hill 🏰, «nuit»"

    latin1 = TRICKY.replace(prompt="café au lait", negative_prompt="")
    png, meta = _save_and_read(_result(latin1))
    assert ("tEXt", "parameters") in _chunks(png)
    assert parse_a1111(meta.raw["parameters"]).fields["prompt"] == "café au lait"


def test_empty_negative_leaves_the_line_out():
    request = TRICKY.replace(negative_prompt="")
    text = a1111_parameters(request, 7, model_name="m", model_hash="")
    assert "Negative prompt" not in text
    assert "Model hash" not in text  # empty values are left out, as A1111 does
    meta = parse_a1111(text)
    assert meta.fields["negative_prompt"] == ""
    assert meta.fields["prompt"] == request.prompt


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_round_trips_through_a1111_text(sampler):
    text = a1111_parameters(TRICKY.replace(sampler=sampler), 1, model_name="m", model_hash="0123456789")
    expected = {
        "DPM++ 2M Karras": "Sampler: DPM++ 2M, Schedule type: Karras",
        "DPM++ SDE Karras": "Sampler: DPM++ SDE, Schedule type: Karras",
        "DPM++ 2M": "Sampler: DPM++ 2M, Schedule type: Uniform",
    }.get(sampler, f"Sampler: {sampler}, Schedule type: Automatic")
    assert expected in text
    meta = parse_a1111(text)
    assert meta.fields["sampler"] == sampler
    assert meta.warnings == ()


def test_img2img_writes_and_reads_denoising_strength():
    request = TRICKY.replace(mode="img2img", init_image=_image(), strength=0.45)
    text = a1111_parameters(request, 5, model_name="m", model_hash="h")
    assert ", Denoising strength: 0.45" in text
    assert "Mask blur" not in text
    meta = parse_a1111(text)
    assert meta.fields["mode"] == "img2img"
    assert meta.fields["strength"] == 0.45
    # the file cannot carry the init image: without one the request falls back to txt2img ...
    assert meta.to_request().mode.value == "txt2img"
    # ... and with one it is img2img again, at the recorded strength
    again = meta.to_request(init_image=_image(), model="/m.safetensors")
    assert (again.mode.value, again.strength, again.model) == ("img2img", 0.45, "/m.safetensors")


def test_inpaint_only_masked_round_trips():
    request = TRICKY.replace(mode="inpaint", init_image=_image(), mask=_mask(), strength=0.6, mask_blur=8,
                             only_masked=True, mask_padding=48)
    text = a1111_parameters(request, 5, model_name="m", model_hash="h")
    assert "Denoising strength: 0.6, Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48" in text
    meta = parse_a1111(text)
    assert {k: meta.fields[k] for k in ("mode", "strength", "mask_blur", "only_masked", "mask_padding")} == {
        "mode": "inpaint", "strength": 0.6, "mask_blur": 8, "only_masked": True, "mask_padding": 48}
    full = meta.to_request(init_image=_image(), mask=_mask())
    assert full.mode.value == "inpaint" and full.only_masked and full.mask_padding == 48

    png, read = _save_and_read(_result(request))
    assert read.to_request(init_image=_image(), mask=_mask()) == request.replace(seed=1234, model=Path(request.model).name)


def test_embed_false_writes_no_prompt_seed_or_model():
    png, meta = _save_and_read(_result(TRICKY), embed=False)
    assert [c for c in _chunks(png) if c[0] in ("tEXt", "zTXt", "iTXt")] == []
    assert b"castle" not in png and b"1234" not in png and b"dream" not in png
    assert meta.source == "none"


# --------------------------------------------------------------------------------------------
# A1111 as other tools write it
# --------------------------------------------------------------------------------------------

A1111_SAMPLE = """masterpiece, a knight, <lora:add_detail:0.8>
in the rain, "quoted words", 城
Negative prompt: (worst quality:1.4), lowres
bad hands
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3141592653, Size: 512x768, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, Clip skip: 2, \
Lora hashes: "add_detail: 0123456789ab", TI hashes: "bad: a, good: b", \
Emphasis: "Original: \\"old\\", quoted", Version: v1.10.1"""


def test_a1111_sample_with_lora_hashes_and_quoted_values():
    meta = read_metadata(io.BytesIO(_png_with_texts(parameters=A1111_SAMPLE)))
    assert meta.source == "a1111"
    assert meta.fields["prompt"] == 'masterpiece, a knight, <lora:add_detail:0.8>\nin the rain, "quoted words", 城'
    assert meta.fields["negative_prompt"] == "(worst quality:1.4), lowres\nbad hands"
    assert (meta.fields["steps"], meta.fields["guidance_scale"], meta.fields["seed"]) == (28, 7.5, 3141592653)
    assert (meta.fields["width"], meta.fields["height"]) == (512, 768)
    assert meta.fields["sampler"] == "DPM++ 2M Karras"
    assert (meta.model_name, meta.model_hash) == ("v1-5-pruned-emaonly", "6ce0161689")
    assert meta.extra["Lora hashes"] == "add_detail: 0123456789ab"
    assert meta.extra["TI hashes"] == "bad: a, good: b"
    assert meta.extra["Emphasis"] == 'Original: "old", quoted'
    assert meta.extra["Clip skip"] == "2" and meta.extra["Version"] == "v1.10.1"
    assert meta.extra["Schedule type"] == "Karras"
    assert meta.warnings == ()
    request = meta.to_request(model="/models/v15.safetensors")
    assert request.seed == 3141592653 and request.sampler == "DPM++ 2M Karras"


def test_a1111_old_combined_sampler_names_and_no_negative():
    meta = parse_a1111("a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512")
    assert meta.fields["sampler"] == "DPM++ 2M Karras"
    assert meta.fields["negative_prompt"] == ""
    assert meta.fields["prompt"] == "a cat"
    # pre-1.9 "DPM++ 2M" (no Schedule type) was the uniform schedule; 1.9+ "Automatic" means Karras
    assert parse_a1111("x\nSteps: 20, Sampler: DPM++ 2M, Seed: 1").fields["sampler"] == "DPM++ 2M"
    automatic = parse_a1111("x\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Automatic, Seed: 1")
    assert automatic.fields["sampler"] == "DPM++ 2M Karras"


def test_a1111_bare_negative_line_and_prompt_lines_that_look_like_parameters():
    text = "line one\nSteps: 3 is part of my prompt\nNegative prompt:\nSteps: 12, Sampler: Euler a, Seed: 9, Size: 640x448"
    meta = parse_a1111(text)
    assert meta.fields["prompt"] == "line one\nSteps: 3 is part of my prompt"
    assert meta.fields["negative_prompt"] == ""
    assert (meta.fields["steps"], meta.fields["width"], meta.fields["height"]) == (12, 640, 448)


def test_a1111_hires_fix_denoising_is_not_img2img():
    meta = parse_a1111("x\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512, Denoising strength: 0.7, "
                       "Hires upscale: 2, Hires upscaler: Latent")
    assert meta.fields["mode"] == "txt2img"
    assert "strength" not in meta.fields
    assert meta.extra["Denoising strength"] == "0.7"


@pytest.mark.parametrize("written, ours", [
    ("DPM++ 2M SDE Karras", "DPM++ SDE Karras"),
    ("Heun", "Euler"),
    ("LMS", "Euler"),
    ("DPM2", "Euler"),
    ("DPM++ 2S a", "Euler a"),
    ("PLMS", "DDIM"),
    ("No Such Sampler", "Euler a"),
])
def test_unknown_samplers_map_to_the_nearest_with_a_warning(written, ours):
    meta = parse_a1111(f"x\nSteps: 20, Sampler: {written}, Seed: 1")
    assert meta.fields["sampler"] == ours
    assert meta.warnings == (f'sampler "{written}" is not available; using {ours}',)
    assert meta.to_request().sampler == ours


def test_euler_a_stays_and_values_out_of_range_are_brought_in_with_warnings():
    meta = parse_a1111("x\nSteps: 400, Sampler: Euler a, CFG scale: 45, Seed: 99999999999, Size: 1000x90")
    assert meta.fields["sampler"] == "Euler a"
    assert meta.fields["steps"] == 150 and meta.fields["guidance_scale"] == 30.0
    assert meta.fields["seed"] == 99999999999  # kept whole: seeds are 64-bit
    assert (meta.fields["width"], meta.fields["height"]) == (1000, 88)
    assert len(meta.warnings) == 3
    assert meta.to_request().height == 88


# --------------------------------------------------------------------------------------------
# ComfyUI
# --------------------------------------------------------------------------------------------

COMFY_GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 5, "steps": 20, "cfg": 8.0, "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0,
        "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SD15/dreamshaper_8.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "film.safetensors", "strength_model": 0.7,
                                                  "strength_clip": 0.7, "model": ["4", 0], "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 2}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["12", 0], "clip": ["10", 1]}},
    "12": {"class_type": "PrimitiveString", "inputs": {"value": "a fox, in snow"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def test_comfyui_graph_with_links_and_a_primitive_prompt():
    png = _png_with_texts(prompt=json.dumps(COMFY_GRAPH), workflow=json.dumps({"nodes": []}))
    meta = read_metadata(io.BytesIO(png))
    assert meta.source == "comfyui"
    assert meta.fields == {
        "prompt": "a fox, in snow", "negative_prompt": "blurry", "seed": 5, "steps": 20, "guidance_scale": 8.0,
        "sampler": "DPM++ 2M Karras", "width": 512, "height": 768, "batch_count": 2, "mode": "txt2img",
    }
    assert meta.model_name == "dreamshaper_8"
    assert meta.extra["Checkpoint"] == "SD15/dreamshaper_8.safetensors"
    assert meta.extra["LoRAs"] == "film: 0.7"
    assert meta.warnings == ()
    assert "workflow" in meta.raw
    assert meta.to_request().batch_count == 2


def test_comfyui_sdxl_ksampler_advanced_base_and_refiner():
    graph = {
        "10": {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": "enable", "noise_seed": 721897303308196, "steps": 25, "cfg": 8, "sampler_name": "euler",
            "scheduler": "normal", "start_at_step": 0, "end_at_step": 20, "return_with_leftover_noise": "enable",
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "11": {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": "disable", "noise_seed": 0, "steps": 25, "cfg": 8, "sampler_name": "euler",
            "scheduler": "normal", "start_at_step": 20, "end_at_step": 10000, "return_with_leftover_noise": "disable",
            "model": ["12", 0], "positive": ["15", 0], "negative": ["16", 0], "latent_image": ["10", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "12": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_refiner_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "a lighthouse", "text_l": "a lighthouse",
                                                             "width": 4096, "height": 4096, "clip": ["4", 1]}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "15": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"text": "refiner text", "ascore": 6,
                                                                     "clip": ["12", 1]}},
        "16": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"text": "", "ascore": 2.5, "clip": ["12", 1]}},
    }
    meta = read_metadata(io.BytesIO(_png_with_texts(prompt=json.dumps(graph))))
    assert meta.source == "comfyui"
    assert meta.fields["prompt"] == "a lighthouse"
    assert meta.fields["negative_prompt"] == ""
    assert (meta.fields["steps"], meta.fields["guidance_scale"], meta.fields["sampler"]) == (25, 8.0, "Euler")
    assert (meta.fields["width"], meta.fields["height"]) == (1024, 1024)
    assert meta.model_name == "sd_xl_base_1.0"
    assert meta.fields["seed"] == 721897303308196  # ComfyUI's 64-bit seed, kept whole
    assert not any("seed" in w for w in meta.warnings)


def test_comfyui_img2img_reads_denoise_as_strength():
    graph = json.loads(json.dumps(COMFY_GRAPH))
    graph["5"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["20", 0], "vae": ["4", 2]}}
    graph["20"] = {"class_type": "LoadImage", "inputs": {"image": "in.png"}}
    graph["3"]["inputs"]["denoise"] = 0.55
    meta = read_metadata(io.BytesIO(_png_with_texts(prompt=json.dumps(graph))))
    assert (meta.fields["mode"], meta.fields["strength"]) == ("img2img", 0.55)
    assert "width" not in meta.fields


# FLUX.1 [dev] as ComfyUI's own example workflow runs it: UNETLoader + DualCLIPLoader, FluxGuidance over
# CLIPTextEncode, SamplerCustomAdvanced fed by RandomNoise / BasicGuider / KSamplerSelect / BasicScheduler,
# an EmptySD3LatentImage. The seed is above 2**53 (a float would lose its last digits).
FLUX_SEED = 1125899906842624123
FLUX_GRAPH = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in fresh snow, golden hour", "clip": ["11", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl_fp16.safetensors",
                                                      "clip_name2": "clip_l.safetensors", "type": "flux"}},
    "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
    "13": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["25", 0], "guider": ["22", 0],
                                                             "sampler": ["16", 0], "sigmas": ["17", 0],
                                                             "latent_image": ["27", 0]}},
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "17": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1.0,
                                                      "model": ["30", 0]}},
    "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0], "conditioning": ["26", 0]}},
    "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": FLUX_SEED}},
    "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
    "30": {"class_type": "ModelSamplingFlux", "inputs": {"max_shift": 1.15, "base_shift": 0.5, "width": 1024,
                                                         "height": 768, "model": ["12", 0]}},
}


def _assert_flux_dev(meta):
    assert meta.source == "comfyui"
    assert meta.fields["prompt"] == "a red fox in fresh snow, golden hour"
    assert meta.fields["negative_prompt"] == ""
    assert meta.fields["seed"] == FLUX_SEED  # 64-bit, kept whole
    assert (meta.fields["steps"], meta.fields["guidance_scale"]) == (20, 3.5)
    assert (meta.fields["width"], meta.fields["height"], meta.fields["mode"]) == (1024, 768, "txt2img")
    assert meta.model_name == "flux1-dev"
    assert meta.extra["Checkpoint"] == "flux1-dev.safetensors"
    assert meta.extra["Text encoders"] == "t5xxl_fp16.safetensors, clip_l.safetensors"
    assert (meta.extra["Sampler"], meta.extra["Scheduler"]) == ("euler", "simple")
    assert not any("could not be traced" in w for w in meta.warnings)


def test_comfyui_flux_graph_with_sampler_custom_advanced(tmp_path, capsys):
    from engine.cli import main

    path = tmp_path / "ComfyUI_00001_.png"
    path.write_bytes(_png_with_texts(prompt=json.dumps(FLUX_GRAPH)))
    meta = read_metadata(path)
    _assert_flux_dev(meta)
    assert meta.to_request().seed == FLUX_SEED
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "source: comfyui" in out and f"seed: {FLUX_SEED}" in out and "guidance_scale: 3.5" in out
    assert "model: flux1-dev" in out and "steps: 20" in out and "width: 1024" in out


def test_comfyui_flux_ksampler_graph_takes_the_flux_guidance_not_the_cfg():
    graph = {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 972054013131369, "steps": 4, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "denoise": 1.0, "model": ["4", 0], "positive": ["35", 0], "negative": ["33", 0], "latent_image": ["27", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-schnell-fp8.safetensors"}},
        "6": {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip_l": "a cat, watercolour",
                                                             "t5xxl": "a ginger cat asleep on a windowsill, watercolour",
                                                             "guidance": 2.0, "clip": ["4", 1]}},
        "35": {"class_type": "FluxGuidance", "inputs": {"guidance": 4.0, "conditioning": ["6", 0]}},
        "33": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
    }
    meta = read_metadata(io.BytesIO(_png_with_texts(prompt=json.dumps(graph))))
    assert meta.fields["prompt"] == "a ginger cat asleep on a windowsill, watercolour"
    assert meta.extra["CLIP-L prompt"] == "a cat, watercolour"
    assert meta.fields["guidance_scale"] == 4.0  # the FluxGuidance nearest the sampler, not KSampler's cfg 1
    assert "CFG" not in meta.extra
    assert (meta.fields["seed"], meta.fields["steps"], meta.fields["width"], meta.fields["height"]) == (
        972054013131369, 4, 832, 1216)
    assert meta.model_name == "flux1-schnell-fp8" and meta.fields["negative_prompt"] == ""


def _flux_workflow() -> dict:
    """FLUX_GRAPH as ComfyUI's editor saves it (the ``workflow`` chunk): widget values by position, the
    seed followed by its "control after generate", a Reroute on the model link, a PrimitiveNode for the steps."""
    def node(nid, cls, widgets=(), inputs=()):
        return {"id": nid, "type": cls, "mode": 0, "widgets_values": list(widgets),
                "inputs": [{"name": n, "type": "*", "link": link} for n, link in inputs], "outputs": []}
    nodes = [
        node(6, "CLIPTextEncode", ["a red fox in fresh snow, golden hour"], [("clip", 1)]),
        node(11, "DualCLIPLoader", ["t5xxl_fp16.safetensors", "clip_l.safetensors", "flux", "default"]),
        node(12, "UNETLoader", ["flux1-dev.safetensors", "default"]),
        node(40, "Reroute", [], [("", 2)]),
        node(30, "ModelSamplingFlux", [1.15, 0.5, 1024, 768], [("model", 3)]),
        node(13, "SamplerCustomAdvanced", [], [("noise", 4), ("guider", 5), ("sampler", 6), ("sigmas", 7),
                                               ("latent_image", 8)]),
        node(16, "KSamplerSelect", ["euler"]),
        node(17, "BasicScheduler", ["simple", 28, 1.0], [("model", 9), ("steps", 13)]),
        node(41, "PrimitiveNode", [20, "fixed"]),
        node(22, "BasicGuider", [], [("model", 10), ("conditioning", 11)]),
        node(25, "RandomNoise", [FLUX_SEED, "randomize"]),
        node(26, "FluxGuidance", [3.5], [("conditioning", 12)]),
        node(27, "EmptySD3LatentImage", [1024, 768, 1]),
        node(50, "Note", ["made on the big machine"]),
    ]
    links = [[1, 11, 0, 6, 0, "CLIP"], [2, 12, 0, 40, 0, "MODEL"], [3, 40, 0, 30, 0, "MODEL"],
             [4, 25, 0, 13, 0, "NOISE"], [5, 22, 0, 13, 1, "GUIDER"], [6, 16, 0, 13, 2, "SAMPLER"],
             [7, 17, 0, 13, 3, "SIGMAS"], [8, 27, 0, 13, 4, "LATENT"], [9, 30, 0, 17, 0, "MODEL"],
             [10, 30, 0, 22, 0, "MODEL"], [11, 26, 0, 22, 1, "CONDITIONING"], [12, 6, 0, 26, 0, "CONDITIONING"],
             [13, 41, 0, 17, 1, "INT"]]
    return {"last_node_id": 50, "last_link_id": 13, "nodes": nodes, "links": links, "version": 0.4}


def test_comfyui_flux_editor_workflow_alone_is_read(tmp_path):
    path = tmp_path / "workflow-only.png"
    path.write_bytes(_png_with_texts(workflow=json.dumps(_flux_workflow())))
    meta = read_metadata(path)
    _assert_flux_dev(meta)  # the steps come from the PrimitiveNode linked to BasicScheduler (20, not 28)
    assert "editor workflow" in meta.extra["Graph"]


def test_comfyui_prompt_wins_over_its_workflow():
    workflow = _flux_workflow()
    workflow["nodes"][0]["widgets_values"] = ["an older prompt"]
    meta = read_metadata(io.BytesIO(_png_with_texts(prompt=json.dumps(FLUX_GRAPH), workflow=json.dumps(workflow))))
    _assert_flux_dev(meta)
    assert "Graph" not in meta.extra


# --------------------------------------------------------------------------------------------
# InvokeAI, NMKD, Fooocus
# --------------------------------------------------------------------------------------------


def test_invokeai_metadata():
    data = {
        "app_version": "3.3.0post3", "generation_mode": "txt2img", "positive_prompt": "landscape, dusk",
        "negative_prompt": "low quality", "width": 768, "height": 432, "seed": 356120443, "rand_device": "cpu",
        "cfg_scale": 7.5, "steps": 50, "scheduler": "dpmpp_2m_k", "clip_skip": 0,
        "model": {"model_name": "amixx_3Prunedfp16", "base_model": "sd-1", "model_type": "main"},
        "loras": [{"lora": {"model_name": "film", "base_model": "sd-1"}, "weight": 0.75}],
    }
    meta = read_metadata(io.BytesIO(_png_with_texts(invokeai_metadata=json.dumps(data))))
    assert meta.source == "invokeai"
    assert meta.fields == {
        "prompt": "landscape, dusk", "negative_prompt": "low quality", "seed": 356120443, "steps": 50,
        "guidance_scale": 7.5, "width": 768, "height": 432, "mode": "txt2img", "sampler": "DPM++ 2M Karras",
    }
    assert meta.model_name == "amixx_3Prunedfp16"
    assert meta.extra["LoRAs"] == "film: 0.75"
    assert meta.extra["Version"] == "InvokeAI 3.3.0post3"

    v4 = dict(data, generation_mode="img2img", strength=0.6, scheduler="euler_a",
              model={"key": "k", "hash": "blake3:abcd", "name": "juggernaut", "base": "sdxl", "type": "main"})
    meta = read_metadata(io.BytesIO(_png_with_texts(invokeai_metadata=json.dumps(v4))))
    assert (meta.fields["mode"], meta.fields["strength"], meta.fields["sampler"]) == ("img2img", 0.6, "Euler a")
    assert (meta.model_name, meta.model_hash) == ("juggernaut", "")
    assert meta.extra["Model hash (InvokeAI)"] == "blake3:abcd"


def test_invokeai_legacy_sd_metadata_and_dream():
    sd_metadata = {
        "model": "stable diffusion", "model_id": "stable-diffusion-1.5",
        "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
        "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.5",
        "image": {"prompt": [{"prompt": "a cat on a mat [blurry, dark]", "weight": 1.0}], "steps": 50,
                  "cfg_scale": 7.5, "height": 512, "width": 576, "seed": 1234, "type": "txt2img",
                  "sampler": "k_lms", "variations": []},
    }
    dream = '"a cat on a mat [blurry, dark]" -s 50 -S 1234 -W 576 -H 512 -C 7.5 -A k_lms'
    meta = read_metadata(io.BytesIO(_png_with_texts(Dream=dream, **{"sd-metadata": json.dumps(sd_metadata)})))
    assert meta.source == "invokeai"
    assert meta.fields == {
        "prompt": "a cat on a mat", "negative_prompt": "blurry, dark", "seed": 1234, "steps": 50,
        "guidance_scale": 7.5, "width": 576, "height": 512, "mode": "txt2img", "sampler": "Euler",
    }
    assert (meta.model_name, meta.model_hash) == ("stable-diffusion-1.5", "cc6cb27103")
    assert meta.warnings == ('sampler "k_lms" is not available; using Euler',)

    only_dream = read_metadata(io.BytesIO(_png_with_texts(Dream=dream.replace("k_lms", "k_euler_a"))))
    assert only_dream.source == "invokeai"
    assert {k: only_dream.fields[k] for k in ("prompt", "negative_prompt", "steps", "seed", "width", "height",
                                               "guidance_scale", "sampler")} == {
        "prompt": "a cat on a mat", "negative_prompt": "blurry, dark", "steps": 50, "seed": 1234, "width": 576,
        "height": 512, "guidance_scale": 7.5, "sampler": "Euler a"}


def test_dream_img2img_compact_options_and_nmkd_marker():
    dream = '"portrait of a robot" -s30 -S 77 -W 512 -H 512 -C 9 -A k_euler -I init.png -f 0.6'
    meta = read_metadata(io.BytesIO(_png_with_texts(Dream=dream, Software="NMKD Stable Diffusion GUI 1.9")))
    assert meta.source == "nmkd"
    assert (meta.fields["prompt"], meta.fields["steps"], meta.fields["seed"]) == ("portrait of a robot", 30, 77)
    assert (meta.fields["mode"], meta.fields["strength"], meta.fields["sampler"]) == ("img2img", 0.6, "Euler")
    assert meta.extra["Init image"] == "init.png"


def test_fooocus_json_parameters():
    data = {
        "prompt": "a red fox, autumn", "negative_prompt": "", "full_prompt": ["a red fox, autumn, sharp"],
        "styles": "['Fooocus V2', 'Fooocus Enhance']", "performance": "Speed", "steps": 30,
        "resolution": "(1152, 896)", "guidance_scale": 4.0, "sharpness": 2.0, "seed": "1234567",
        "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "base_model": "juggernautXL_v8Rundiffusion",
        "base_model_hash": "aeb7e9e6897a1e58b10494bd989d001e3d4bc9b634633cd7b559838f612c2867",
        "version": "Fooocus v2.5.5",
    }
    meta = read_metadata(io.BytesIO(_png_with_texts(parameters=json.dumps(data), fooocus_scheme="fooocus")))
    assert meta.source == "fooocus"
    assert meta.fields == {
        "prompt": "a red fox, autumn", "negative_prompt": "", "steps": 30, "guidance_scale": 4.0, "seed": 1234567,
        "mode": "txt2img", "width": 1152, "height": 896, "sampler": "DPM++ SDE Karras",
    }
    assert (meta.model_name, meta.model_hash) == ("juggernautXL_v8Rundiffusion", "aeb7e9e689")
    assert meta.extra["Performance"] == "Speed"
    assert meta.warnings == ('sampler "dpmpp_2m_sde_gpu karras" is not available; using DPM++ SDE Karras',)


def test_fooocus_a1111_scheme_is_reported_as_fooocus():
    text = "a fox\nNegative prompt: dull\nSteps: 30, Sampler: DPM++ 2M SDE Karras, Seed: 5, Size: 1024x1024, Version: Fooocus v2.5.5"
    meta = read_metadata(io.BytesIO(_png_with_texts(parameters=text, fooocus_scheme="a1111")))
    assert meta.source == "fooocus"
    assert (meta.fields["prompt"], meta.fields["negative_prompt"], meta.fields["seed"]) == ("a fox", "dull", 5)


# --------------------------------------------------------------------------------------------
# JPEG / WebP EXIF
# --------------------------------------------------------------------------------------------


def _jpeg_with_user_comment(comment: bytes | str, *, in_exif_ifd=True, fmt="JPEG", extra_tags=None) -> bytes:
    exif = Image.Exif()
    if in_exif_ifd:
        exif[0x8769] = {0x9286: comment}
    else:
        exif[0x9286] = comment
    for tag, value in (extra_tags or {}).items():
        exif[tag] = value
    buffer = io.BytesIO()
    _image().save(buffer, fmt, exif=exif)
    return buffer.getvalue()


PARAMS_UNICODE = "a lake, «dawn» 湖\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 11, Size: 512x512"


@pytest.mark.parametrize("encoding, fmt", [("utf-16-be", "JPEG"), ("utf-16-le", "JPEG"), ("utf-16-be", "WEBP")])
def test_exif_user_comment_unicode_either_endian(encoding, fmt):
    data = _jpeg_with_user_comment(b"UNICODE\0" + PARAMS_UNICODE.encode(encoding), fmt=fmt)
    meta = read_metadata(io.BytesIO(data))
    assert meta.source == "a1111"
    assert (meta.fields["prompt"], meta.fields["negative_prompt"]) == ("a lake, «dawn» 湖", "fog")
    assert (meta.fields["seed"], meta.fields["sampler"]) == (11, "Euler a")


def test_exif_user_comment_ascii_and_the_writer_helper(tmp_path):
    data = _jpeg_with_user_comment(b"ASCII\0\0\0" + b"a boat\nSteps: 9, Seed: 3, Size: 256x256")
    meta = read_metadata(io.BytesIO(data))
    assert (meta.fields["prompt"], meta.fields["steps"], meta.fields["width"]) == ("a boat", 9, 256)

    path = tmp_path / "out.jpg"
    _image().save(path, "JPEG", exif=metadata.exif_with_parameters(PARAMS_UNICODE))
    assert read_metadata(path).fields["prompt"] == "a lake, «dawn» 湖"


def test_fooocus_jpeg_json_in_ifd0_with_maker_note():
    comment = json.dumps({"prompt": "a owl", "negative_prompt": "", "steps": 60, "seed": 8,
                          "resolution": "(896, 1152)", "guidance_scale": 4, "sampler": "dpmpp_2m_sde_gpu",
                          "scheduler": "karras", "base_model": "juggernautXL.safetensors"})
    data = _jpeg_with_user_comment(comment, in_exif_ifd=False, extra_tags={0x927C: "fooocus", 0x0131: "Fooocus v2.5.5"})
    meta = read_metadata(io.BytesIO(data))
    assert meta.source == "fooocus"
    assert (meta.fields["prompt"], meta.fields["steps"], meta.fields["width"], meta.model_name) == (
        "a owl", 60, 896, "juggernautXL")


# --------------------------------------------------------------------------------------------
# faults: oversized, malformed, truncated, not an image
# --------------------------------------------------------------------------------------------


def test_20_mb_text_chunks_never_raise_even_when_pillow_refuses_the_file():
    big = "x" * (20 * 1024 * 1024)
    info = PngInfo()
    info.add_text("comment", big, zip=True)  # Pillow cannot open this file: past MAX_TEXT_CHUNK
    info.add_text("parameters", "a tiny prompt\nSteps: 4, Seed: 2, Size: 64x64")
    png = _png_bytes(info)
    with pytest.raises(ValueError):
        Image.open(io.BytesIO(png))
    meta = read_metadata(io.BytesIO(png))
    assert (meta.source, meta.fields["prompt"], meta.fields["steps"]) == ("a1111", "a tiny prompt", 4)

    plain = _png_with_texts(parameters=big)
    meta = read_metadata(io.BytesIO(plain))
    assert meta.source == "a1111" and len(meta.fields["prompt"]) == len(big)


def test_chunks_over_our_limit_are_skipped_with_a_warning(monkeypatch):
    monkeypatch.setattr(metadata.containers, "MAX_CHUNK_BYTES", 1000)  # patched where the reader looks it up
    info = PngInfo()
    info.add_text("Dream", "y" * 5000)
    info.add_text("parameters", "z" * 2000, zip=True)  # small compressed, inflates past the limit
    info.add_text("invokeai_metadata", json.dumps({"positive_prompt": "kept", "steps": 5}))
    meta = read_metadata(io.BytesIO(_png_bytes(info)))
    assert meta.source == "invokeai"
    assert meta.fields["prompt"] == "kept"
    assert any("too large" in w for w in meta.warnings)
    assert any("inflates to more than" in w for w in meta.warnings)


@pytest.mark.parametrize("texts, source", [
    ({"invokeai_metadata": '{"positive_prompt": "a", '}, "none"),
    ({"prompt": '{"3": {"class_type": "KSampler", "inputs": '}, "none"),
    ({"sd-metadata": "[1, 2"}, "none"),
    ({"parameters": "{not json}", "fooocus_scheme": "fooocus"}, "none"),
    ({"easel": "{broken", "parameters": "a\nSteps: 5, Seed: 1"}, "a1111"),
    ({"easel": json.dumps({"format": "easel", "version": 1, "request": {"prompt": 5, "steps": "many",
                                                                         "sampler": "Heun", "width": 77}})}, "easel"),
    ({"prompt": json.dumps({"1": {"class_type": "KSampler", "inputs": {"positive": ["9", 0], "steps": "x"}}})},
     "comfyui"),
])
def test_malformed_metadata_never_raises(texts, source):
    meta = read_metadata(io.BytesIO(_png_with_texts(**texts)))
    assert meta.source == source
    assert meta.warnings
    meta.to_request()  # whatever was salvaged still makes a valid request


def test_damaged_easel_chunk_keeps_the_salvageable_fields():
    text = json.dumps({"format": "easel", "version": 2, "request": {"prompt": "kept", "steps": "many",
                                                                    "sampler": "Heun", "width": 77}})
    meta = read_metadata(io.BytesIO(_png_with_texts(easel=text)))
    assert meta.fields == {"prompt": "kept", "sampler": "Euler", "width": 80}
    assert any("newer Easel" in w for w in meta.warnings)


def test_truncated_and_non_image_files_give_none(tmp_path):
    png = _png_with_texts(parameters="a\nSteps: 5, Seed: 1")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png[: len(png) - 30])
    meta = read_metadata(truncated)
    assert meta.source == "a1111"  # the text chunk came before the cut
    assert any("ends early" in w for w in meta.warnings)

    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    assert read_metadata(text_file).source == "none"
    assert read_metadata(tmp_path / "missing.png").source == "none"
    assert read_metadata(io.BytesIO(_png_bytes())).source == "none"


def test_reads_from_a_pil_image_and_a_path(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png_with_texts(parameters=A1111_SAMPLE))
    assert read_metadata(path).fields["seed"] == 3141592653
    with Image.open(path) as image:
        assert read_metadata(image).fields["seed"] == 3141592653


def test_map_sampler_accepts_every_tools_spelling():
    assert map_sampler("dpmpp_2m", "karras") == ("DPM++ 2M Karras", None)
    assert map_sampler("euler_ancestral", "normal") == ("Euler a", None)
    assert map_sampler("k_euler_a") == ("Euler a", None)
    assert map_sampler("dpmpp_sde_k") == ("DPM++ SDE Karras", None)
    assert map_sampler("uni_pc", "normal") == ("UniPC", None)
    assert map_sampler("Euler", "Karras")[0] == "Euler" and map_sampler("Euler", "Karras")[1]


def test_an_upscale_says_so_instead_of_its_img2img_recipe():
    source = Image.new("RGB", (16, 16))
    request = GenerationRequest(prompt="a kite", mode="img2img", init_image=source, width=64, height=64, seed=3)
    result = Result(images=(_image(),), seeds=(3,), request=request,
                    model=ModelInfo(path="/models/x4", name="x4", kind="checkpoint", family="sd-x4-upscaler",
                                    format="diffusers"),
                    model_hash="", settings=RuntimeSettings(device="cpu", dtype="float32", preset="fast"),
                    timings=Timings(), params=(("Upscale by", "4"),))  # as the x4 runner records it
    _png, meta = _save_and_read(result)
    assert meta.fields["mode"] == "img2img"  # the recipe stays exact, for regenerating
    assert meta.upscale == "Postprocess upscale by: 4, Postprocess upscaler: x4"
    gan = read_metadata(io.BytesIO(_png_with_texts(parameters="a kite\nSteps: 20, Seed: 1",
                                                   postprocessing="Postprocess upscale by: 2, Postprocess upscaler: tiny")))
    assert gan.upscale == "Postprocess upscale by: 2, Postprocess upscaler: tiny"
    assert read_metadata(io.BytesIO(_png_with_texts(parameters="a kite\nSteps: 20, Seed: 1"))).upscale == ""
