"""The model library: every model file in the user's folders and in other tools' installs, in place.

``ModelLibrary.scan()`` lists checkpoints, inpainting checkpoints, LoRAs, embeddings, VAEs, upscalers,
control models (ControlNets) and preview decoders, with family, size and the reason a file cannot be used. ``find`` resolves the
names a prompt uses (``<lora:name:0.8>``, embedding names) to files. Hashes are computed lazily
(``hash_all`` on a background thread) and remembered. Qt-free, torch-free: any thread but the GUI's.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from engine.files.safe import read_json
from engine.models.hashes import HashCache
from engine.models.locations import ScanRoot, default_roots, expand_root
from engine.models.scan import KIND_LABELS, EntryCache, ModelEntry, scan_roots

__all__ = ["ModelLibrary", "ModelEntry", "KIND_LABELS", "ScanRoot", "configured_folders"]

KIND_ORDER = ("checkpoint", "inpaint", "lora", "embedding", "vae", "upscaler", "controlnet", "ipadapter", "redux", "clipvision", "taesd", "unknown")


def configured_folders(data_dir: str | os.PathLike[str] | None) -> list[str]:
    """The folders the user added in the app (settings.json ``model_folders``), plus <data>/models."""
    if not data_dir:
        return []
    folders = [str(Path(data_dir) / "models")]
    try:
        data = read_json(Path(data_dir) / "settings.json")
        folders += [f for f in data.get("model_folders", []) if isinstance(f, str)]
    except (OSError, ValueError, AttributeError):
        pass
    return folders


class ModelLibrary:
    """Model folders and what is in them.

    ``folders``: user folders (an A1111/ComfyUI/InvokeAI install root expands to its model folders).
    ``include_defaults``: also the installs found on this machine and the Hugging Face cache.
    ``state_dir``: where the scan and hash caches live (None: in memory only).
    """

    def __init__(self, folders: list[str] | None = None, *, include_defaults: bool = True,
                 state_dir: str | os.PathLike[str] | None = None, home: Path | None = None):
        self.folders = list(folders or [])
        self.include_defaults = include_defaults
        self.home = home
        state = Path(state_dir) if state_dir else None
        self._entry_cache = EntryCache(state / "library-cache.json" if state else None)
        self.hashes = HashCache(state / "hashes.json" if state else None)
        self.entries: list[ModelEntry] = []
        self._lock = threading.Lock()
        self._scanned = False

    def roots(self) -> list[ScanRoot]:
        roots: list[ScanRoot] = []
        for folder in self.folders:
            roots += expand_root(str(Path(folder).expanduser()))
        if self.include_defaults:
            roots += default_roots(self.home)
        unique: dict[str, ScanRoot] = {}
        for r in roots:
            unique.setdefault(os.path.normcase(os.path.abspath(r.path)), r)
        return list(unique.values())

    def scan(self) -> list[ModelEntry]:
        """Walk every root and judge every candidate (headers only; cached). Returns the entries
        sorted by kind, then usable before not, then name."""
        entries = scan_roots(self.roots(), self._entry_cache)
        entries.sort(key=lambda e: (KIND_ORDER.index(e.kind) if e.kind in KIND_ORDER else 99,
                                    not e.usable, e.name.lower()))
        self._entry_cache.save()
        with self._lock:
            self.entries = entries
            self._scanned = True
        return entries

    def ensure_scanned(self) -> None:
        if not self._scanned:
            self.scan()

    def of_kind(self, *kinds: str) -> list[ModelEntry]:
        return [e for e in self.entries if e.kind in kinds]

    def find(self, kind: str, name: str, family: str = "") -> ModelEntry | None:
        """The entry of ``kind`` called ``name`` (file stem, or a relative path as A1111 allows), preferring
        one of ``family``. Case-sensitive first, then case-insensitive."""
        self.ensure_scanned()
        want = name.replace("\\", "/")
        for fold in (False, True):
            matches = []
            for e in self.of_kind(kind):
                names = {e.name, Path(e.path).name}
                rel = Path(e.path).with_suffix("").as_posix()
                ok = want in names or (("/" in want) and rel.endswith("/" + want))
                if not ok and fold:
                    ok = want.lower() in {n.lower() for n in names}
                if ok:
                    matches.append(e)
            if matches:
                matches.sort(key=lambda e: (bool(family) and e.family != family, e.path))
                return matches[0]
        return None

    def embedding_names(self) -> list[str]:
        self.ensure_scanned()
        return [e.name for e in self.of_kind("embedding")]

    def taesd(self, family: str) -> ModelEntry | None:
        """A local tiny autoencoder for live previews of the latent space ``family`` ("sd" and "sd1" /
        "sd2" share one; "sdxl"; "flux": TAEF1; "flux2": TAEF2). None when the library has none for it."""
        self.ensure_scanned()
        want = family if family in ("sdxl", "flux", "flux2") else "sd1"
        return next((e for e in self.of_kind("taesd") if e.family == want), None)

    def sha256(self, path: str) -> str:
        return self.hashes.sha256(path)

    def hash_all(self, on_hash: Callable[[str, str], None] | None = None,
                 cancel: threading.Event | None = None) -> int:
        """Hash every entry not hashed yet (whole files: slow; run on a background thread).
        ``on_hash(path, sha256)`` after each; returns how many were hashed."""
        done = 0
        for e in list(self.entries):
            if cancel is not None and cancel.is_set():
                break
            if e.convertible or e.kind == "taesd" or self.hashes.cached(e.path):
                continue
            try:
                digest = self.hashes.sha256(e.path)
            except OSError:
                continue
            done += 1
            if on_hash:
                on_hash(e.path, digest)
        self.hashes.save()
        return done
