"""What the ``easel`` subcommands share: the terminal reporter, the exit codes, reading an input
image, the model library, running a request and saving (or rescuing) its images. The subcommand
modules (engine.cli, cli_families, cli_models, cli_gallery, cli_grid) import this; it imports none
of them. Main thread.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from engine.api import EaselError, GenerationRequest, ImageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def report(message: str) -> None:
    """Print one ``easel: ...`` line to stderr: the terminal reporter every error goes through.

    Control characters (a newline or an ANSI escape inside a file name or a library's message) are
    escaped, so the line stays one line and cannot rewrite the terminal. Main thread.
    """
    from engine.files.safe import printable

    print(f"easel: {printable(strip_ansi(str(message)).strip())}", file=sys.stderr)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (torch and others put them in their own messages)."""
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def library_for(args):
    """The model library the CLI resolves LoRA / embedding / VAE names with."""
    from engine.models import ModelLibrary, configured_folders
    from engine.paths import data_dir

    root = data_dir(args.data_dir)
    folders = configured_folders(root) + list(getattr(args, "models_dir", []) or [])
    model = getattr(args, "model", None)
    if model:  # the model's own folder, as A1111 users keep LoRAs near their checkpoints
        # realpath, not Path.resolve(): a symlink loop must reach the model check and its one line
        folders.append(os.path.dirname(os.path.realpath(os.path.expanduser(model))))
    return ModelLibrary(folders, include_defaults=True, state_dir=root)


def resolve_vae(vae: str, library) -> str:
    if not vae:
        return ""
    if Path(vae).expanduser().is_file():
        return str(Path(vae).expanduser().resolve())
    entry = library.find("vae", Path(vae).stem)
    if entry is None:
        raise EaselError(f"no VAE called {vae} (give its path, or a folder with --models-dir)")
    return entry.path


def load_image(path: str | None, what: str):
    """Open an image file by engine.images' rules (upright, 8-bit RGB/RGBA, bombs refused); ImageError otherwise."""
    from engine.images import open_image

    if not path:
        raise ImageError(f"no {what} given")
    return open_image(path, what)


def is_variations_model(model: str) -> bool:
    """Whether ``model`` makes variations of an image (Stable unCLIP: its prompt is optional); False
    when it cannot be told."""
    from engine.families import capabilities
    from engine.files.probe import inspect_model

    caps = capabilities(inspect_model(model))
    return caps is not None and caps.role == "variations"


def multiple_of_8(v: int) -> int:
    """The image's side rounded up to the latent grid: the engine pads and crops back (no stretch)."""
    return max(64, -(-v // 8) * 8)


def with_native_size(fields: dict, model: str) -> dict:
    """Fill what the user left out (size, steps, guidance) with the model family's defaults."""
    if all(k in fields for k in ("width", "height", "steps", "guidance_scale")):
        return fields
    from engine import families
    from engine.files.probe import check_model

    defaults = families.defaults(check_model(model))
    for key in ("width", "height", "steps", "guidance_scale"):
        fields.setdefault(key, defaults[key])
    return fields


def run_and_save(args, request: GenerationRequest, out: str | None, *, embed: bool) -> int:
    from engine.engine import Engine
    from engine.paths import data_dir as _data_dir

    folder = output_folder(args, out)
    from engine.files.space import check_writable_folder

    # Before the long part: a read-only or full folder loses no work. A PNG is at most 3 bytes a
    # pixel (RGB, incompressible) plus its metadata.
    check_writable_folder(folder, need_bytes=request.batch_count * (3 * request.width * request.height + 65536))
    engine = Engine(device=args.device, library=library_for(args), state_dir=_data_dir(args.data_dir))
    bar = ProgressBar(request)
    cancel = threading.Event()
    try:
        result = engine.generate(request, on_progress=bar.update, cancel=cancel)
    finally:
        bar.close()
    paths = save_or_rescue(args, result, out, embed=embed)
    for path, seed in zip(paths, result.seeds):
        print(f"{path}  (seed {seed})")
    for notice in result.notices:
        report(f"note: {notice}")
    t = result.timings
    print(f"{len(paths)} image(s) in {t.total:.1f}s (load {t.load:.1f}s, encode {t.encode:.2f}s, "
          f"denoise {t.denoise:.1f}s, decode {t.decode:.2f}s) on {result.settings.device} "
          f"{result.settings.precision}, preset {result.settings.preset}", file=sys.stderr)
    return EXIT_OK


def check_output(args, out: str | None, width: int | None, height: int | None, batch: int) -> None:
    """Refuse an output target that cannot take the images (a device, a read-only or full folder)
    before any model is read; sizes not given yet count as 1024 px."""
    from engine.files.space import check_writable_folder

    pixels = (width or 1024) * (height or 1024)
    check_writable_folder(output_folder(args, out), need_bytes=max(1, batch or 1) * (3 * pixels + 65536))


def output_folder(args, out: str | None) -> Path:
    """Where the images will go: ``--out``'s folder (refusing a device or other special file as
    the target), or the gallery's outputs folder."""
    from engine.files.safe import printable

    if out and Path(out).suffix.lower() == ".png":
        target = Path(out)
        if target.exists() and not target.is_file():
            raise EaselError(f"--out {printable(out)}: not a regular file; give a .png file name or a folder")
        return target.parent if str(target.parent) else Path(".")
    if out:
        if Path(out).exists() and not Path(out).is_dir():
            raise EaselError(f"--out {printable(out)}: give a .png file name or a folder")
        return Path(out)
    from engine.paths import data_dir, outputs_dir

    return outputs_dir(data_dir(args.data_dir))


def save_or_rescue(args, result, out: str | None, *, embed: bool) -> list[Path]:
    """Save ``result`` where the user asked (a file, a folder or the gallery) and return the paths.

    The images are never lost once made: when only the gallery index cannot be written (a full
    disk, a read-only or newer index), the PNGs are still saved and the gallery picks them up later;
    when the PNGs themselves cannot be written, they are written to a rescue folder in the system's
    temporary folder, and one line says where. Main thread.
    """
    from engine.files.space import describe_os_error
    from engine.outputs import save_image, save_result

    saved: list[Path] = []
    try:
        if out and Path(out).suffix.lower() == ".png":
            target = Path(out)
            for i in range(len(result.images)):
                dest = target if len(result.images) == 1 else target.with_name(f"{target.stem}-{i + 1}{target.suffix}")
                saved.append(save_image(result, i, dest, embed_metadata=embed))
            return saved
        if out:
            return save_result(result, Path(out), embed_metadata=embed)
        return save_to_gallery(args, result, embed)
    except EaselError as exc:
        if not isinstance(exc.__cause__, OSError):
            raise
        line = describe_os_error(exc.__cause__) or str(exc)
        rescued = rescue(result, embed)
        if not rescued:
            raise EaselError(f"{line}; the image could not be saved anywhere") from None
        raise EaselError(f"{line}; the image was kept in {rescued[0].parent} "
                         f"({', '.join(p.name for p in rescued)})") from None


def save_to_gallery(args, result, embed: bool) -> list[Path]:
    from engine.cli_gallery import open_library
    from engine.library import IndexUnavailable, SaveFailed
    from engine.outputs import save_result
    from engine.paths import data_dir, outputs_dir

    try:
        library = open_library(args.data_dir, need_owner=False)
    except IndexUnavailable as exc:
        # The index cannot be written (a full disk, a read-only index): the PNGs still can be, and
        # the gallery indexes them when it next opens. The index itself is left as it is.
        paths = save_result(result, outputs_dir(data_dir(args.data_dir)), embed_metadata=embed)
        report(f"note: {exc}; the image is saved and joins the gallery when the index can be written")
        return paths
    with library:
        try:
            entries = library.save(result, embed_metadata=embed)
        except SaveFailed as exc:
            raise EaselError(f"{exc}; nothing partial was left") from exc.__cause__
        return [library.absolute(e) for e in entries]


def rescue(result, embed: bool) -> list[Path]:
    """Write the images not yet saved into ``<tmp>/easel-rescued``; [] when that fails too."""
    import tempfile

    from engine.outputs import save_result

    folder = Path(tempfile.gettempdir()) / "easel-rescued"
    try:
        return save_result(result, folder, embed_metadata=embed)
    except EaselError:
        return []


class ProgressBar:
    """A terminal progress bar (tqdm) when stderr is a terminal; silent otherwise."""

    def __init__(self, request: GenerationRequest):
        self._bar = None
        self._enabled = sys.stderr.isatty()
        self._batch = request.batch_count

    def update(self, progress) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        if self._bar is None or progress.step == 1:
            if self._bar is not None:
                self._bar.close()
            desc = progress.stage_name or (f"image {progress.image_index + 1}/{self._batch}" if self._batch > 1
                                           else "generating")  # "Optimising for this GPU, once" at step 0
            self._bar = tqdm(total=progress.total, desc=desc, unit="step", file=sys.stderr, leave=False)
        self._bar.n = progress.step
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
