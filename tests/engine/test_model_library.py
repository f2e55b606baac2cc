"""The model library: fake A1111 / ComfyUI / InvokeAI / Hugging Face trees made here, scanned in place."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from engine.models import ModelLibrary
from engine.models.locations import default_roots
from engine.testaddons import make_kind_file

ROOT = Path(__file__).resolve().parents[2]


def a1111_tree(root: Path) -> Path:
    """An A1111 install: every model folder with files of the kinds it normally holds, plus a pickle,
    an SD3 file and a LoRA put among the checkpoints by mistake."""
    w = root / "stable-diffusion-webui"
    (w / "webui.py").parent.mkdir(parents=True)
    (w / "webui.py").write_text("# A1111")
    sd = w / "models" / "Stable-diffusion"
    make_kind_file(sd / "dreamy-v1.safetensors", "checkpoint", "sd1")
    make_kind_file(sd / "xl" / "juggernaut-xl.safetensors", "checkpoint", "sdxl")
    make_kind_file(sd / "v2-inpainting.safetensors", "inpaint", "sd2")
    make_kind_file(sd / "sd3-medium.safetensors", "sd3")
    make_kind_file(sd / "misplaced-lora.safetensors", "lora", "sd1")
    (sd / "old-model.ckpt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))
    make_kind_file(w / "models" / "Lora" / "detail-tweaker.safetensors", "lora", "sd1")
    make_kind_file(w / "models" / "Lora" / "xl-style.safetensors", "lora", "sdxl")
    make_kind_file(w / "models" / "VAE" / "vae-ft-mse.safetensors", "vae")
    make_kind_file(w / "embeddings" / "easynegative.safetensors", "embedding", "sd1")
    make_kind_file(w / "models" / "ESRGAN" / "4x-ultrasharp.safetensors", "upscaler")
    (w / "models" / "ESRGAN" / "4x-anime.pth").write_bytes(pickle.dumps({"params": {}}, protocol=2))
    (w / "models" / "Stable-diffusion" / "lfs-pointer.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2132625894\n")
    return w


def comfy_tree(root: Path) -> Path:
    c = root / "ComfyUI"
    (c / "comfy").mkdir(parents=True)
    m = c / "models"
    make_kind_file(m / "checkpoints" / "realistic.safetensors", "checkpoint", "sd1")
    make_kind_file(m / "loras" / "film-grain.safetensors", "lora", "sdxl")
    make_kind_file(m / "vae" / "sdxl-vae.safetensors", "vae")
    make_kind_file(m / "embeddings" / "badhands.safetensors", "embedding", "sd2")
    make_kind_file(m / "upscale_models" / "esrgan.safetensors", "upscaler")
    (m / "checkpoints" / "empty.safetensors").write_bytes(b"")
    return c


def by_name(entries):
    return {e.name: e for e in entries}


def test_a1111_install_lists_every_model_with_kind_and_family_and_explains_the_rest(tmp_path, no_network):
    install = a1111_tree(tmp_path)
    lib = ModelLibrary([str(install)], include_defaults=False)
    found = by_name(lib.scan())
    expect = {
        "dreamy-v1": ("checkpoint", "sd1"), "juggernaut-xl": ("checkpoint", "sdxl"),
        "v2-inpainting": ("inpaint", "sd2"), "detail-tweaker": ("lora", "sd1"), "xl-style": ("lora", "sdxl"),
        "vae-ft-mse": ("vae", ""), "easynegative": ("embedding", "sd1"), "4x-ultrasharp": ("upscaler", ""),
        "misplaced-lora": ("lora", "sd1"),
    }
    for name, (kind, family) in expect.items():
        assert (found[name].kind, found[name].family) == (kind, family), name
        assert found[name].usable and found[name].source == "A1111"
    assert "this SD 3.5 file holds the transformer but not its CLIP-L, CLIP-G, VAE" in found["sd3-medium"].reason
    assert found["old-model"].convertible and "convert it to .safetensors" in found["old-model"].reason
    # A .pth upscaler is read weights-only by Upscale: listed as an upscaler, not "convert".
    assert found["4x-anime"].kind == "upscaler" and found["4x-anime"].usable and not found["4x-anime"].convertible
    assert "git-LFS pointer" in found["lfs-pointer"].reason
    assert "this is a LoRA, not a checkpoint" in found["misplaced-lora"].info.problem
    # Files stay where they are: the library holds their paths in the install.
    assert all(str(install) in e.path for e in found.values())


def test_comfyui_install_is_scanned_in_place(tmp_path):
    c = comfy_tree(tmp_path)
    found = by_name(ModelLibrary([str(c)], include_defaults=False).scan())
    assert found["realistic"].kind == "checkpoint" and found["realistic"].source == "ComfyUI"
    assert (found["film-grain"].kind, found["film-grain"].family) == ("lora", "sdxl")
    assert (found["badhands"].kind, found["badhands"].family) == ("embedding", "sd2")
    assert found["esrgan"].kind == "upscaler"
    assert "0 bytes" in found["empty"].reason


def test_invokeai_and_hf_cache_layouts(tmp_path, tiny_models, monkeypatch):
    invoke = tmp_path / "invokeai"
    (invoke / "invokeai.yaml").parent.mkdir(parents=True)
    (invoke / "invokeai.yaml").write_text("InvokeAI:\n")
    make_kind_file(invoke / "models" / "sd-1" / "main" / "deliberate.safetensors", "checkpoint", "sd1")
    make_kind_file(invoke / "models" / "sdxl" / "lora" / "pixel-art" / "pixel.safetensors", "lora", "sdxl")
    # A hub cache: a diffusers snapshot whose files are links into blobs/, as huggingface_hub writes it.
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--acme--tiny-sd"
    snap = repo / "snapshots" / "0123abcd"
    src = Path(tiny_models.get())
    for f in src.rglob("*"):
        if f.is_file():
            blob = repo / "blobs" / f"{abs(hash(str(f))):x}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(f.read_bytes())
            link = snap / f.relative_to(src)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("INVOKEAI_ROOT", str(invoke))
    home = tmp_path / "home"
    home.mkdir()
    lib = ModelLibrary([], include_defaults=True, home=home)
    sources = {r.source for r in lib.roots()}
    assert {"InvokeAI", "Hugging Face"} <= sources
    found = by_name(lib.scan())
    assert found["deliberate"].kind == "checkpoint" and found["deliberate"].source == "InvokeAI"
    assert found["pixel"].kind == "lora" and found["pixel"].family == "sdxl"
    snapshot = next(e for e in found.values() if e.source == "Hugging Face")
    assert snapshot.usable and snapshot.info.format == "diffusers" and snapshot.family == "sd1"


def test_default_roots_find_installs_in_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("INVOKEAI_ROOT", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    a1111_tree(tmp_path)
    comfy_tree(tmp_path)
    roots = default_roots(tmp_path)
    names = {(r.source, Path(r.path).name) for r in roots}
    assert ("A1111", "Lora") in names and ("A1111", "embeddings") in names
    assert ("ComfyUI", "loras") in names and ("ComfyUI", "checkpoints") in names


def test_warm_scan_reads_no_headers_and_sees_changed_files(tmp_path, monkeypatch):
    install = a1111_tree(tmp_path)
    state = tmp_path / "state"
    ModelLibrary([str(install)], include_defaults=False, state_dir=state).scan()
    import engine.models.scan as scan_mod

    calls = []
    real = scan_mod.probe.inspect_model  # the scan reads headers through its (lazily imported) probe
    monkeypatch.setattr(scan_mod.probe, "inspect_model", lambda p: calls.append(p) or real(p))
    lib = ModelLibrary([str(install)], include_defaults=False, state_dir=state)
    lib.scan()
    assert calls == []  # everything came from the cache
    changed = install / "models" / "Lora" / "detail-tweaker.safetensors"
    make_kind_file(changed, "lora", "sdxl")  # replaced by another file
    found = by_name(lib.scan())
    assert calls == [str(changed)]
    assert found["detail-tweaker"].family == "sdxl"


def test_find_resolves_prompt_names_and_hashes_are_cached(tmp_path):
    install = a1111_tree(tmp_path)
    lib = ModelLibrary([str(install)], include_defaults=False, state_dir=tmp_path / "state")
    lib.scan()
    assert lib.find("lora", "detail-tweaker").name == "detail-tweaker"
    assert lib.find("lora", "DETAIL-TWEAKER").name == "detail-tweaker"  # case-insensitive fallback
    assert lib.find("lora", "nope") is None
    assert lib.embedding_names() == ["easynegative"]
    assert lib.hash_all() >= 10
    again = ModelLibrary([str(install)], include_defaults=False, state_dir=tmp_path / "state")
    entry = lib.find("vae", "vae-ft-mse")
    import hashlib

    assert again.hashes.cached(entry.path) == hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()


def test_cli_models_list_json(tmp_path):
    install = comfy_tree(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "models", "list", "--json", "--no-defaults", "--folder", str(install),
         "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["realistic"]["kind"] == "checkpoint" and rows["realistic"]["family"] == "sd1"
    assert rows["film-grain"]["kind_label"] == "LoRA" and rows["film-grain"]["family"] == "sdxl"
    assert rows["empty"]["usable"] is False and "0 bytes" in rows["empty"]["problem"]


def test_cli_models_list_text_says_why(tmp_path):
    install = a1111_tree(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "models", "list", "--no-defaults", "--folder", str(install),
         "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "this SD 3.5 file holds the transformer but not its CLIP-L, CLIP-G, VAE" in out.stdout
    assert "pickle file: convert it to .safetensors" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "models", "list", "--folder", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a folder" in bad.stderr


@pytest.mark.parametrize("depth", [1, 3])
def test_symlink_loops_end(tmp_path, depth):
    folder = tmp_path / "models"
    deep = folder.joinpath(*["d"] * depth)
    deep.mkdir(parents=True)
    os.symlink(folder, deep / "loop")
    make_kind_file(deep / "x.safetensors", "lora", "sd1")
    assert [e.name for e in ModelLibrary([str(folder)], include_defaults=False).scan()] == ["x"]


def test_library_hash_of_a_folder_is_the_metadata_model_hash(tmp_path):
    """The library's cached hash and the "Model hash" written into images pick the same file,
    also for transformer-only folders (aMUSEd), so restoring settings finds the model by hash."""
    from engine.files.probe import model_hash
    from engine.models.hashes import HashCache

    for sub in ("unet", "transformer"):
        folder = tmp_path / f"model-{sub}"
        (folder / sub).mkdir(parents=True)
        (folder / sub / "diffusion_pytorch_model.safetensors").write_bytes(sub.encode() * 1000)
        (folder / "model_index.json").write_text("{}")
        cache = HashCache(tmp_path / f"hashes-{sub}.json")
        assert cache.sha256(str(folder))[:10] == model_hash(folder)
        cache.save()
        assert HashCache(tmp_path / f"hashes-{sub}.json").cached(str(folder)) == cache.sha256(str(folder))
