"""Pickle conversion: only on request, in another process, with the restricted loader; a malicious pickle
never runs its code (canary), a plain one becomes a .safetensors beside it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from engine.convert import ConversionError, convert_to_safetensors
from engine.files.probe import inspect_model

ROOT = Path(__file__).resolve().parents[2]


class Evil:
    """Unpickling this creates the canary file: the proof that code ran."""

    def __init__(self, canary: Path):
        self.canary = str(canary)

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def test_malicious_pickle_is_refused_by_the_converter_and_never_runs(tmp_path):
    canary = tmp_path / "canary"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": {"w": Evil(canary)}}, protocol=2))
    assert inspect_model(evil).format == "pickle"  # listed as a pickle, never opened
    with pytest.raises(ConversionError) as info:
        convert_to_safetensors(evil)
    assert "refused" in str(info.value) and "\n" not in str(info.value)
    assert not canary.exists()
    assert not (tmp_path / "evil.safetensors").exists() and not list(tmp_path.glob("*.part"))


def test_torch_zip_with_code_is_refused_too(tmp_path):
    import torch

    canary = tmp_path / "canary"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "hook": Evil(canary)}, evil)  # a torch zip whose pickle runs code
    with pytest.raises(ConversionError):
        convert_to_safetensors(evil)
    assert not canary.exists()


def _record_unpickling_here(monkeypatch) -> list[str]:
    """Record every way this process could unpickle: ``torch.load`` (what the converter's child calls),
    the restricted unpickler it uses with weights_only=True, and the pickle module's own entry points."""
    import torch
    import torch._weights_only_unpickler as restricted

    seen: list[str] = []

    def spy(name, original):
        def wrapper(*args, **kwargs):
            seen.append(name)
            return original(*args, **kwargs)
        return wrapper

    def spying_class(name, base):
        class Spy(base):
            def __init__(self, *args, **kwargs):
                seen.append(name)
                super().__init__(*args, **kwargs)
        return Spy

    monkeypatch.setattr(torch, "load", spy("torch.load", torch.load))
    monkeypatch.setattr(restricted, "Unpickler", spying_class("restricted Unpickler", restricted.Unpickler))
    monkeypatch.setattr(restricted, "load", spy("restricted load", restricted.load))
    monkeypatch.setattr(pickle, "Unpickler", spying_class("pickle.Unpickler", pickle.Unpickler))
    monkeypatch.setattr(pickle, "load", spy("pickle.load", pickle.load))
    monkeypatch.setattr(pickle, "loads", spy("pickle.loads", pickle.loads))
    return seen


def test_the_spy_sees_a_checkpoint_loaded_in_this_process(tmp_path, monkeypatch):
    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "here.ckpt")
    seen = _record_unpickling_here(monkeypatch)
    torch.load(tmp_path / "here.ckpt", weights_only=True)
    assert "torch.load" in seen and "restricted Unpickler" in seen  # so an empty record below means something


def test_plain_checkpoint_converts_beside_the_original_in_another_process(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    weights = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4, 3, 3),
               "first_stage_model.decoder.conv_out.weight": torch.randn(3, 4, 1, 1)}
    weights["tied"] = weights["first_stage_model.decoder.conv_out.weight"]  # shared storage
    src = tmp_path / "model.ckpt"
    torch.save({"state_dict": weights, "global_step": 10}, src)
    # The checkpoint is unpickled only in a child process (`python -m engine.convert`), never in this one.
    started = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: started.append(list(cmd)) or real_run(cmd, *a, **k))
    unpickled_here = _record_unpickling_here(monkeypatch)
    out = convert_to_safetensors(src)
    monkeypatch.undo()
    assert unpickled_here == []
    assert [c[1:3] for c in started] == [["-m", "engine.convert"]]
    assert out == tmp_path / "model.safetensors" and src.exists()
    back = load_file(out)
    assert set(back) == set(weights) and all(torch.equal(back[k], weights[k]) for k in weights)
    with pytest.raises(ConversionError) as info:
        convert_to_safetensors(src)
    assert "already exists" in str(info.value)


def test_cli_convert_asks_first(tmp_path):
    import torch

    src = tmp_path / "emb.pt"
    torch.save({"string_to_param": {"*": torch.randn(2, 768)}, "name": "emb"}, src)
    refused = subprocess.run([sys.executable, "-m", "engine.cli", "models", "convert", str(src)],
                             capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=300)
    assert refused.returncode == 2 and "--yes" in refused.stderr and not (tmp_path / "emb.safetensors").exists()
    ok = subprocess.run([sys.executable, "-m", "engine.cli", "models", "convert", str(src), "--yes"],
                        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr
    info = inspect_model(tmp_path / "emb.safetensors")
    assert (info.kind, info.family) == ("embedding", "sd1")
