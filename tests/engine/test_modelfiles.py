"""engine.files.probe: what a model file or folder is, from its bytes and header alone.

Every file here is built by hand in tmp_path with tiny shapes (a few bytes of data): detection must
rest on tensor names and channel counts, so a tiny file is recognised exactly like a 7 GB one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from math import prod
from pathlib import Path

import pytest

from engine.api import ModelError, ModelInfo, UnsafeModelFile, UnsupportedModel
from engine.files.probe import (
    PICKLE_PROBLEM,
    SafetensorsHeader,
    TensorInfo,
    check_model,
    inspect_model,
    model_hash,
    read_header,
    sha256_file,
    sniff,
)

_ITEM = {"F16": 2, "F32": 4, "U8": 1, "BF16": 2, "I64": 8}


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def write_raw(path: Path, header: object, data: bytes = b"", header_bytes: bytes | None = None) -> Path:
    hb = json.dumps(header).encode() if header_bytes is None else header_bytes
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + data)
    return path


def write_st(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None) -> Path:
    """A valid safetensors file: tensors laid out back to back, data all zero."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = prod(shape) * _ITEM[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    return write_raw(path, header, bytes(offset))


def checkpoint_keys(family: str, in_channels: int = 4, width: int = 8) -> dict[str, tuple[str, list[int]]]:
    """Original-layout (LDM / A1111) key names with tiny shapes; ``width`` is the text encoder's."""
    keys = {
        "model.diffusion_model.input_blocks.0.0.weight": ("F16", [8, in_channels, 3, 3]),
        "model.diffusion_model.out.2.weight": ("F16", [4, 8, 3, 3]),
        "first_stage_model.encoder.conv_in.weight": ("F16", [8, 3, 3, 3]),
        "first_stage_model.decoder.conv_out.weight": ("F16", [3, 8, 3, 3]),
    }
    if family == "sd1":
        keys["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = ("F16", [16, width])
    elif family == "sd1-old":  # early files lack the text_model. level
        keys["cond_stage_model.transformer.embeddings.token_embedding.weight"] = ("F16", [16, width])
    elif family == "sd2":
        keys["cond_stage_model.model.token_embedding.weight"] = ("F16", [16, width])
        keys["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = ("F16", [3 * width, width])
    elif family == "sdxl":
        keys["model.diffusion_model.label_emb.0.0.weight"] = ("F16", [8, 16])
        keys["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = ("F16", [16, width])
        keys["conditioner.embedders.1.model.token_embedding.weight"] = ("F16", [16, width])
    elif family == "refiner":
        keys["model.diffusion_model.label_emb.0.0.weight"] = ("F16", [8, 16])
        keys["conditioner.embedders.0.model.token_embedding.weight"] = ("F16", [16, width])
    return keys


def assert_one_line_naming(error: Exception, path: Path) -> None:
    text = str(error)
    assert len(text.splitlines()) == 1, text
    assert path.name in text, text


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family,in_channels,kind,expected_family",
    [
        ("sd1", 4, "checkpoint", "sd1"),
        ("sd1", 9, "inpaint", "sd1"),
        ("sd1-old", 4, "checkpoint", "sd1"),
        ("sd2", 4, "checkpoint", "sd2"),
        ("sd2", 9, "inpaint", "sd2"),
        ("sdxl", 4, "checkpoint", "sdxl"),
        ("sdxl", 9, "inpaint", "sdxl"),
    ],
)
def test_checkpoint_family_and_kind(tmp_path, family, in_channels, kind, expected_family):
    path = write_st(tmp_path / f"{family}-{in_channels}.safetensors", checkpoint_keys(family, in_channels))
    info = check_model(path)
    assert (info.kind, info.family, info.format) == (kind, expected_family, "safetensors")
    assert info.name == path.stem and info.path == str(path)
    assert info.size_bytes == path.stat().st_size
    assert info.usable and info.problem is None
    assert info.inpainting == (kind == "inpaint")
    assert inspect_model(path) == info


@pytest.mark.parametrize("family,width", [("sd1", 1024), ("sd2", 768), ("sdxl", 32)])
def test_family_rests_on_names_not_hidden_sizes(tmp_path, family, width):
    # An SD2 file whose text encoder is 768 wide is still SD2: sizes never decide the family.
    info = check_model(write_st(tmp_path / "m.safetensors", checkpoint_keys(family, width=width)))
    assert info.family == family


def test_format_comes_from_bytes_not_extension(tmp_path):
    path = write_st(tmp_path / "renamed.ckpt", checkpoint_keys("sd1"))
    assert sniff(path) == "safetensors"
    assert check_model(path).family == "sd1"


def test_header_length_whose_low_bytes_look_like_a_pickle_opcode(tmp_path):
    # A 640-byte header starts the file with 80 02 ..., which is also how a protocol-2 pickle starts.
    keys = checkpoint_keys("sd1")
    header, offset = {}, 0
    for name, (dtype, shape) in keys.items():
        n = prod(shape) * _ITEM[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    hb = json.dumps(header).encode()
    assert len(hb) < 0x280
    path = write_raw(tmp_path / "padded.safetensors", None, bytes(offset), header_bytes=hb.ljust(0x280))
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert sniff(path) == "safetensors"
    assert check_model(path).family == "sd1"


def test_read_header_agrees_with_the_safetensors_library(tmp_path):
    np = pytest.importorskip("numpy")
    from safetensors import safe_open
    from safetensors.numpy import save_file

    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": np.ones((8, 4, 3, 3), np.float16),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": np.ones((16, 8), np.float32),
        "first_stage_model.decoder.conv_out.weight": np.ones((3, 8, 3, 3), np.int64),
        "empty": np.ones((0, 5), np.float32),
    }
    path = tmp_path / "real.safetensors"
    save_file(tensors, str(path), metadata={"modelspec.title": "x"})
    header = read_header(path)
    assert isinstance(header, SafetensorsHeader)
    assert header.metadata == {"modelspec.title": "x"}
    assert header.shapes() == {k: v.shape for k, v in tensors.items()}
    assert header.tensors["first_stage_model.decoder.conv_out.weight"].dtype == "I64"
    assert header.data_offset == 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]
    with safe_open(str(path), "numpy") as f:
        assert set(f.keys()) == set(header.tensors)
    assert check_model(path).family == "sd1"
    # and our own hand-written files are valid for the real library too
    hand = write_st(tmp_path / "hand.safetensors", checkpoint_keys("sdxl"))
    with safe_open(str(hand), "numpy") as f:
        assert set(f.keys()) == set(read_header(hand).tensors)
    first = next(iter(read_header(hand).tensors.values()))
    assert first == TensorInfo("F16", (8, 4, 3, 3), 0, 8 * 4 * 3 * 3 * 2)


# --------------------------------------------------------------------------------------------
# Prediction type
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family,metadata,sidecar,extra,expected",
    [
        ("sd2", None, None, {}, "v_prediction"),  # the common 768-v models; diffusers assumes the same
        ("sd1", None, None, {}, "epsilon"),
        ("sdxl", None, None, {}, "epsilon"),
        ("sd2", {"modelspec.prediction_type": "epsilon"}, None, {}, "epsilon"),
        ("sd1", {"modelspec.prediction_type": "v"}, None, {}, "v_prediction"),
        ("sdxl", {"modelspec.prediction_type": "v_prediction"}, None, {}, "v_prediction"),
        ("sd1", None, 'model:\n  params:\n    parameterization: "v"\n', {}, "v_prediction"),
        ("sd2", None, "model:\n  params:\n    linear_start: 0.00085\n", {}, "epsilon"),  # 512-base with its yaml
        ("sdxl", None, None, {"v_pred": ("F16", [0])}, "v_prediction"),
        ("sd2", {"modelspec.prediction_type": "epsilon"}, 'parameterization: "v"\n', {}, "epsilon"),
    ],
)
def test_prediction_type(tmp_path, family, metadata, sidecar, extra, expected):
    path = write_st(tmp_path / "model.safetensors", {**checkpoint_keys(family), **extra}, metadata)
    if sidecar is not None:
        (tmp_path / "model.yaml").write_text(sidecar)
    assert check_model(path).prediction_type == expected


def test_sd2_inpainting_defaults_to_epsilon():
    """SD 2 inpainting (512-inpainting-ema) is an epsilon model, unlike the 768 v text-to-image one."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_st(Path(tmp) / "512-inpainting.safetensors", checkpoint_keys("sd2", in_channels=9))
        info = check_model(path)
    assert (info.family, info.kind, info.prediction_type) == ("sd2", "inpaint", "epsilon")


# --------------------------------------------------------------------------------------------
# Well-formed files Easel cannot run as a generator
# --------------------------------------------------------------------------------------------


def test_a_controlnet_fragment_is_a_control_model_of_no_known_architecture(tmp_path):
    # (Real ControlNets are recognised with their family: tests/engine/test_control.py.)
    path = write_st(tmp_path / "other.safetensors", {"control_model.input_hint_block.0.weight": ("F16", [4, 3, 3, 3])})
    with pytest.raises(UnsupportedModel) as err:
        check_model(path)
    assert err.value.problem == "a ControlNet of an architecture Easel does not know"
    info = inspect_model(path)
    assert info.kind == "controlnet" and not info.family and not info.usable


@pytest.mark.parametrize(
    "keys,message",
    [
        (checkpoint_keys("refiner"), "SDXL refiner checkpoints are not supported yet"),
        ({"double_blocks.0.img_attn.qkv.weight": ("F16", [6, 2])}, "this FLUX transformer file lacks tensors every FLUX model has (img_in): it is incomplete"),
        ({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": ("F16", [6, 2])}, "this FLUX transformer file lacks tensors every FLUX model has (img_in): it is incomplete"),
        (checkpoint_keys("sd1", in_channels=8), "InstructPix2Pix checkpoints (8 input channels) are not supported yet"),
        ({"foo.weight": ("F32", [2])}, "could not recognise this file as a Stable Diffusion 1.x, 2.x or SDXL checkpoint"),
    ],
    ids=["refiner", "flux", "flux-prefixed", "pix2pix", "unknown"],
)
def test_unsupported_architectures(tmp_path, keys, message):
    path = write_st(tmp_path / "other.safetensors", keys)
    with pytest.raises(UnsupportedModel) as err:
        check_model(path)
    assert err.value.problem == message
    assert_one_line_naming(err.value, path)
    info = inspect_model(path)
    assert info.problem == message and info.kind == "unknown" and not info.usable


@pytest.mark.parametrize(
    "keys,family",
    [
        ({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": ("F16", [2, 768]),
          "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": ("F16", [320, 2]),
          "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ("F16", [2, 768])}, "sd1"),
        ({"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": ("F16", [2, 2048]),
          "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ("F16", [2, 8]),
          "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ("F16", [2, 8])}, "sdxl"),
        ({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": ("F16", [2, 1024]),
          "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": ("F16", [320, 2])}, "sd2"),
        ({"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": ("F16", [2, 4])}, ""),
        ({"unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": ("F16", [2, 4])}, ""),
    ],
    ids=["kohya-sd1", "kohya-sdxl", "peft-sd2", "no-family", "old-diffusers"],
)
def test_lora(tmp_path, keys, family):
    path = write_st(tmp_path / "detail_tweaker.safetensors", keys)
    with pytest.raises(UnsupportedModel) as err:
        check_model(path)
    assert "<lora:detail_tweaker:0.8>" in str(err.value)
    assert_one_line_naming(err.value, path)
    info = inspect_model(path)
    assert (info.kind, info.family) == ("lora", family)
    assert info.problem == "this is a LoRA, not a checkpoint: use it in a prompt as <lora:detail_tweaker:0.8>"


@pytest.mark.parametrize(
    "keys,kind,family",
    [
        ({"emb_params": ("F32", [2, 768])}, "embedding", "sd1"),
        ({"emb_params": ("F32", [2, 1024])}, "embedding", "sd2"),
        ({"string_to_param.*": ("F32", [1, 768])}, "embedding", "sd1"),
        ({"clip_l": ("F32", [2, 768]), "clip_g": ("F32", [2, 1280])}, "embedding", "sdxl"),
        ({"encoder.conv_in.weight": ("F16", [8, 3, 3, 3]), "decoder.conv_out.weight": ("F16", [3, 8, 3, 3])}, "vae", ""),
        ({"conv_first.weight": ("F16", [4, 3, 3, 3]), "body.0.rdb1.conv1.weight": ("F16", [4, 4, 3, 3])}, "upscaler", ""),
        ({"model.0.weight": ("F16", [4, 3, 3, 3]), "model.1.sub.0.RDB1.conv1.0.weight": ("F16", [4, 4, 3, 3])}, "upscaler", ""),
        ({"foo.weight": ("F32", [2])}, "unknown", ""),
    ],
    ids=["emb-sd1", "emb-sd2", "emb-a1111", "emb-sdxl", "vae", "esrgan-new", "esrgan-old", "unknown"],
)
def test_addons_are_recognised_but_not_usable(tmp_path, keys, kind, family):
    path = write_st(tmp_path / "addon.safetensors", keys)
    with pytest.raises(UnsupportedModel) as err:
        check_model(path)
    assert_one_line_naming(err.value, path)
    info = inspect_model(path)
    assert (info.kind, info.family) == (kind, family)
    assert info.problem and not info.usable


# --------------------------------------------------------------------------------------------
# Malformed files
# --------------------------------------------------------------------------------------------

_GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]}}


def _malformed(path: Path, case: str) -> None:
    good = json.loads(json.dumps(_GOOD))
    if case == "empty":
        path.write_bytes(b"")
    elif case == "lfs-pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2132625894\n")
    elif case == "header-past-end":
        path.write_bytes(struct.pack("<Q", 5000) + b'{"a": 1}')
    elif case == "header-absurd":
        path.write_bytes(struct.pack("<Q", 2**40) + b"{" + bytes(64))
    elif case == "bad-json":
        write_raw(path, None, bytes(16), header_bytes=b'{"a": {"dtype": "F32",')
    elif case == "not-utf8":
        write_raw(path, None, bytes(16), header_bytes=b'{"\xff\xfe": 1}')
    elif case == "not-object":
        write_raw(path, None, b"", header_bytes=b"[1, 2]")
    elif case in ("no-dtype", "no-shape", "no-data_offsets"):
        del good["b"][case[3:]]
        write_raw(path, good, bytes(16))
    elif case == "unknown-dtype":
        good["b"]["dtype"] = "F17"
        write_raw(path, good, bytes(16))
    elif case == "size-mismatch":
        good["b"]["shape"] = [3, 2]
        write_raw(path, good, bytes(16))
    elif case == "offsets-past-end":
        good["b"]["data_offsets"] = [1000, 1008]
        write_raw(path, good, bytes(16))
    elif case == "overlap":
        good["b"]["data_offsets"] = [4, 12]
        write_raw(path, good, bytes(16))
    elif case == "gap":
        good["b"]["data_offsets"] = [12, 20]
        write_raw(path, good, bytes(20))
    elif case == "trailing-bytes":
        write_raw(path, good, bytes(24))
    elif case == "truncated":
        write_raw(path, good, bytes(11))
    elif case == "html":
        path.write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    elif case == "gguf":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(32))
    elif case == "junk":
        path.write_bytes(b"\x00\x01\x02 this is not a model at all" * 4)
    else:
        raise AssertionError(case)


_MALFORMED = [
    ("empty", ModelError, "empty file (0 bytes): the download or copy did not finish"),
    ("lfs-pointer", ModelError, "this is a git-LFS pointer, not the model itself: fetch the real file (git lfs pull)"),
    ("header-past-end", ModelError, "runs past the end of the file"),
    ("header-absurd", ModelError, "implausible (over 100 MB)"),
    ("bad-json", ModelError, "the header is not valid JSON"),
    ("not-utf8", ModelError, "not UTF-8"),
    ("not-object", ModelError, "not a JSON object"),
    ("no-dtype", ModelError, 'tensor "b" has no dtype'),
    ("no-shape", ModelError, 'tensor "b" has no shape'),
    ("no-data_offsets", ModelError, 'tensor "b" has no data_offsets'),
    ("unknown-dtype", ModelError, 'unknown dtype "F17"'),
    ("size-mismatch", ModelError, "(12 bytes) but its data_offsets span 8 bytes"),
    ("offsets-past-end", ModelError, "past the end of the file"),
    ("overlap", ModelError, 'tensors "a" and "b" overlap'),
    ("gap", ModelError, '4 bytes before tensor "b" belong to no tensor'),
    ("trailing-bytes", ModelError, "8 bytes after the last tensor are not described"),
    ("truncated", ModelError, "truncated: the file is"),
    ("html", ModelError, "web page"),
    ("gguf", UnsupportedModel, "Easel reads GGUF files only as FLUX.1, FLUX.2 [klein], Z-Image, Qwen-Image and SD 3.5 transformers"),
    ("junk", ModelError, "not a safetensors file"),
]


@pytest.mark.parametrize("case,error,message", _MALFORMED, ids=[c[0] for c in _MALFORMED])
def test_malformed_files_fail_with_one_line(tmp_path, case, error, message):
    path = tmp_path / f"broken-{case}.safetensors"
    _malformed(path, case)
    with pytest.raises(error) as err:
        read_header(path)
    assert message in err.value.problem
    assert_one_line_naming(err.value, path)
    assert type(err.value) is error
    with pytest.raises(error) as again:
        check_model(path)
    assert again.value.problem == err.value.problem
    info = inspect_model(path)
    assert info.problem == err.value.problem and not info.usable and info.kind == "unknown"


@pytest.mark.parametrize("case", [c[0] for c in _MALFORMED if c[0] not in ("gguf",)])
def test_the_safetensors_library_rejects_every_file_we_reject(tmp_path, case):
    # Our checks are never stricter than the real loader: each of these would fail to load anyway.
    from safetensors import safe_open

    path = tmp_path / f"broken-{case}.safetensors"
    _malformed(path, case)
    with pytest.raises(Exception):
        with safe_open(str(path), "numpy") as f:
            for key in f.keys():
                f.get_tensor(key)


def test_truncated_download_reports_human_sizes(tmp_path):
    # A sparse file: the header promises 2.0 GB of data, the file stops at 1.9 GB (no disk used).
    path = tmp_path / "big.safetensors"
    header = {"model.diffusion_model.input_blocks.0.0.weight": {"dtype": "U8", "shape": [2_000_000_000], "data_offsets": [0, 2_000_000_000]}}
    write_raw(path, header)
    with open(path, "r+b") as f:
        f.truncate(1_900_000_000)
    with pytest.raises(ModelError) as err:
        check_model(path)
    assert "truncated: the file is 1.9 GB but its header describes 2.0 GB; the download did not finish" in str(err.value)


def test_one_byte_short_still_shows_different_sizes(tmp_path):
    header = {"a": {"dtype": "U8", "shape": [3000], "data_offsets": [0, 3000]}}
    path = write_raw(tmp_path / "short.safetensors", header, bytes(2999))
    with pytest.raises(ModelError) as err:
        read_header(path)
    size = path.stat().st_size
    assert err.value.problem == (f"truncated: the file is 3.1 KB ({size:,} bytes) but its header describes "
                                 f"3.1 KB ({size + 1:,} bytes); the download did not finish")


def test_tensor_names_cannot_break_the_message_onto_two_lines(tmp_path):
    path = write_raw(tmp_path / "sneaky.safetensors", {"a\nb\u2028c": {"dtype": "X", "shape": [], "data_offsets": [0, 0]}})
    with pytest.raises(ModelError) as err:
        read_header(path)
    assert_one_line_naming(err.value, path)


def test_missing_path_and_plain_folder(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ModelError) as err:
        check_model(missing)
    assert_one_line_naming(err.value, missing)
    assert inspect_model(missing).problem == "not found"

    folder = tmp_path / "just_a_folder"
    folder.mkdir()
    with pytest.raises(ModelError, match="no model_index.json") as err:
        check_model(folder)
    assert_one_line_naming(err.value, folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_special_files_are_never_opened(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # opening this for reading would block forever
    assert sniff(fifo) == "unknown"
    info = inspect_model(fifo)
    assert info.problem and not info.usable
    with pytest.raises(ModelError):
        check_model(fifo)


# --------------------------------------------------------------------------------------------
# Pickles: refused, never unpickled
# --------------------------------------------------------------------------------------------


class _Canary:
    """Unpickling this creates the file at ``path``: proof that something unpickled it."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _torch_zip(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:  # torch.save's layout: <name>/data.pkl, <name>/version, <name>/data/0
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", bytes(16))
    return path


@pytest.fixture
def evil_files(tmp_path):
    canary = tmp_path / "CANARY_pwned"
    # the payload is real: unpickling a twin of it does create its canary
    control = tmp_path / "control_canary"
    pickle.loads(pickle.dumps(_Canary(control), protocol=2))
    assert control.exists()

    files = []
    for proto in (2, 3, 4, 5):
        payload = pickle.dumps({"state_dict": _Canary(canary)}, protocol=proto)
        for name in (f"evil-p{proto}.ckpt", f"evil-p{proto}.safetensors", f"evil-p{proto}.pt"):
            (tmp_path / name).write_bytes(payload)
            files.append(tmp_path / name)
    payload = pickle.dumps(_Canary(canary), protocol=2)
    files.append(_torch_zip(tmp_path / "evil-zip.ckpt", payload))
    files.append(_torch_zip(tmp_path / "evil-zip.safetensors", payload))
    return canary, files


def test_pickles_are_refused_and_never_unpickled(evil_files):
    canary, files = evil_files
    for path in files:
        assert sniff(path) in ("pickle", "torch-zip"), path
        with pytest.raises(UnsafeModelFile) as err:
            check_model(path)
        assert err.value.problem == PICKLE_PROBLEM
        assert_one_line_naming(err.value, path)
        with pytest.raises(UnsafeModelFile):
            read_header(path)
        info = inspect_model(path)
        assert info.problem == PICKLE_PROBLEM and not info.usable
        assert info.format in ("pickle", "torch-zip")
    assert not canary.exists()


def test_examining_pickles_never_loads_the_pickle_module(evil_files):
    canary, files = evil_files
    code = (
        "import sys\nfrom engine.files.probe import check_model, inspect_model, sniff\n"
        f"for p in {[str(f) for f in files]!r}:\n"
        "    sniff(p); inspect_model(p)\n"
        "    try: check_model(p)\n"
        "    except Exception: pass\n"
        "bad = [m for m in ('pickle', '_pickle', 'torch', 'numpy', 'PySide6') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
    assert not canary.exists()


def test_a_plain_zip_archive_is_not_called_a_pickle(tmp_path):
    inner = write_st(tmp_path / "inner.safetensors", checkpoint_keys("sd1"))
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(inner, "model.safetensors")
    with pytest.raises(ModelError) as err:
        check_model(archive)
    assert not isinstance(err.value, UnsafeModelFile)
    assert "zip archive" in err.value.problem


# --------------------------------------------------------------------------------------------
# Diffusers folders
# --------------------------------------------------------------------------------------------


def make_diffusers(root: Path, family: str = "sd1", in_channels: int = 4, prediction: str = "epsilon",
                   cls: str | None = None) -> Path:
    xl = family == "sdxl"
    cls = cls or ("StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline")
    index = {"_class_name": cls, "_diffusers_version": "0.42.1",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None]}
    encoders = ["text_encoder"]
    if xl:
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
        encoders.append("text_encoder_2")
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index))
    for part, config, weights in [("unet", {"in_channels": in_channels}, "diffusion_pytorch_model.safetensors"),
                                  ("vae", {"in_channels": 3}, "diffusion_pytorch_model.safetensors")] + [
            (enc, {"hidden_act": "gelu" if family == "sd2" or enc == "text_encoder_2" else "quick_gelu"}, "model.safetensors")
            for enc in encoders]:
        (root / part).mkdir()
        (root / part / "config.json").write_text(json.dumps(config))
        write_st(root / part / weights, {"conv_in.weight": ("F16", [8, 4, 3, 3])})
    for tok in ["tokenizer"] + (["tokenizer_2"] if xl else []):
        (root / tok).mkdir()
        (root / tok / "vocab.json").write_text("{}")
        (root / tok / "merges.txt").write_text("#version: 0.2\n")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))
    return root


@pytest.mark.parametrize(
    "family,in_channels,prediction,kind",
    [("sd1", 4, "epsilon", "checkpoint"), ("sd1", 9, "epsilon", "inpaint"), ("sd2", 4, "v_prediction", "checkpoint"),
     ("sdxl", 4, "epsilon", "checkpoint"), ("sdxl", 9, "epsilon", "inpaint")],
)
def test_diffusers_folder(tmp_path, family, in_channels, prediction, kind):
    root = make_diffusers(tmp_path / "My Model", family, in_channels, prediction)
    info = check_model(root)
    assert (info.kind, info.family, info.prediction_type, info.format) == (kind, family, prediction, "diffusers")
    assert info.name == "My Model" and info.usable
    assert info.size_bytes == sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert check_model(str(root) + os.sep).name == "My Model"


def _diffusers_error(root: Path, error: type[ModelError]) -> ModelError:
    with pytest.raises(error) as err:
        check_model(root)
    assert_one_line_naming(err.value, root)
    info = inspect_model(root)
    assert info.problem == err.value.problem and not info.usable and info.format == "diffusers"
    return err.value


def test_incomplete_diffusers_folder(tmp_path):
    root = make_diffusers(tmp_path / "half")
    (root / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    for f in (root / "tokenizer").iterdir():
        f.unlink()
    (root / "tokenizer").rmdir()
    err = _diffusers_error(root, ModelError)
    assert err.problem == "incomplete diffusers folder: missing unet/ weights, tokenizer/"


def test_sdxl_folder_without_its_second_encoder_is_incomplete(tmp_path):
    root = make_diffusers(tmp_path / "xl", "sdxl")
    for f in (root / "text_encoder_2").iterdir():
        f.unlink()
    (root / "text_encoder_2").rmdir()
    assert "missing text_encoder_2/" in _diffusers_error(root, ModelError).problem


def test_unsupported_pipeline_class(tmp_path):
    root = make_diffusers(tmp_path / "video", cls="HunyuanVideoPipeline")  # (FluxPipeline is FLUX.1 now)
    assert _diffusers_error(root, UnsupportedModel).problem == "HunyuanVideoPipeline models are not supported yet"


def test_sdxl_refiner_folder(tmp_path):
    root = make_diffusers(tmp_path / "refiner", "sdxl", cls="StableDiffusionXLImg2ImgPipeline")
    index = json.loads((root / "model_index.json").read_text())
    index["text_encoder"] = [None, None]
    (root / "model_index.json").write_text(json.dumps(index))
    assert _diffusers_error(root, UnsupportedModel).problem == "SDXL refiner models are not supported yet"


@pytest.mark.parametrize("rel", ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json"])
def test_broken_json_in_diffusers_folder(tmp_path, rel):
    root = make_diffusers(tmp_path / "broken")
    (root / rel).write_text('{"_class_name": "StableDiffusionPipeline",\n  "unet": [')
    err = _diffusers_error(root, ModelError)
    assert err.problem.startswith(f"{rel} is not valid JSON")


def test_lfs_pointer_inside_diffusers_folder(tmp_path):
    root = make_diffusers(tmp_path / "cloned")
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 3438167534\n")
    err = _diffusers_error(root, ModelError)
    assert err.problem.startswith("unet/diffusion_pytorch_model.safetensors: this is a git-LFS pointer")


def test_diffusers_folder_with_pickle_weights_only(tmp_path, evil_files):
    canary, _ = evil_files
    root = make_diffusers(tmp_path / "old")
    (root / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (root / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Canary(canary), protocol=2))
    err = _diffusers_error(root, UnsafeModelFile)
    assert err.problem == f"unet/diffusion_pytorch_model.bin: {PICKLE_PROBLEM}"
    assert not canary.exists()


# --------------------------------------------------------------------------------------------
# Hashes and import cost
# --------------------------------------------------------------------------------------------


def test_hashes(tmp_path):
    path = write_st(tmp_path / "m.safetensors", checkpoint_keys("sd1"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path) == digest
    assert sha256_file(path, chunk=7) == digest  # chunk boundaries do not matter
    assert model_hash(path) == digest[:10]

    root = make_diffusers(tmp_path / "folder")
    unet = root / "unet" / "diffusion_pytorch_model.safetensors"
    assert model_hash(root) == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    with pytest.raises(ModelError):
        model_hash(tmp_path / "missing.safetensors")


def test_sniff_kinds(tmp_path, evil_files):
    _, files = evil_files
    cases = {"empty": b"", "lfs-pointer": b"version https://git-lfs.github.com/spec/v1\n",
             "gguf": b"GGUF\x03\x00\x00\x00", "unknown": b"hello"}
    for expected, data in cases.items():
        (tmp_path / f"s-{expected}").write_bytes(data)
        assert sniff(tmp_path / f"s-{expected}") == expected
    assert sniff(write_st(tmp_path / "x.bin", {"a": ("F32", [1])})) == "safetensors"
    assert sniff(files[0]) == "pickle" and sniff(tmp_path / "evil-zip.ckpt") == "torch-zip"
    assert sniff(tmp_path) == "unknown" and sniff(tmp_path / "missing") == "unknown"


def test_import_is_light():
    code = ("import sys, engine.files.probe\n"
            "bad = [m for m in ('torch', 'numpy', 'diffusers', 'PySide6', 'pickle', 'yaml') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True, timeout=60)


def test_inspect_never_raises_and_matches_check(tmp_path, evil_files):
    _, files = evil_files
    paths = list(files) + [tmp_path / "missing", tmp_path]
    for case, _, _ in _MALFORMED:
        _malformed(tmp_path / f"m-{case}.safetensors", case)
        paths.append(tmp_path / f"m-{case}.safetensors")
    for path in paths:
        info = inspect_model(path)
        assert isinstance(info, ModelInfo)
        assert info.problem is not None and len(info.problem.splitlines()) == 1
