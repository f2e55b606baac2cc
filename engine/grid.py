"""X/Y/Z grids (A1111's "X/Y/Z plot"): axes over a base request expand into jobs; the results are saved one
by one (each with its own metadata) and drawn into one labelled grid image that records how to re-run it.

Qt-free and torch-free: the plan, the saving and the drawing run on whichever thread drives the grid (the
CLI's main thread, the app's I/O thread). ``run_local`` drives an ``Engine`` through its public API only;
``engine.farm`` runs the same plan on a Ray cluster.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import secrets
import shlex
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.api import SAMPLERS, Cancelled, EaselError, GenerationRequest, InvalidRequest, Result, random_seed

AXES: tuple[str, ...] = ("seed", "cfg", "steps", "sampler", "model", "size", "prompt-sr", "lora")
AXIS_HELP = {
    "seed": "seeds: 1,2,3 or a range 1-8",
    "cfg": "guidance scales: 3,5.5,7",
    "steps": "step counts: 10,20 or a range 10-30 (+10)",
    "sampler": f"sampler names: {', '.join(SAMPLERS)}",
    "model": "model files or folders (paths)",
    "size": "sizes: 512x512,768x512",
    "prompt-sr": "prompt search/replace: the first value is searched for in the prompt, each value replaces it",
    "lora": "LoRA weights: 0.2,0.6,1 (the prompt's one <lora:…> tag), or name:0.5 for a named LoRA",
}
GRID_CHUNK = "easel_grid"  # PNG text chunk of the grid image: the recipe as JSON
MAX_JOBS = 1000


class GridError(EaselError):
    """A grid that cannot be planned (bad axis text, too many jobs): one plain line."""


# ------------------------------------------------------------------------------------------ axes


@dataclass(frozen=True)
class Axis:
    """One axis: its name (one of ``AXES``) and its values as the user wrote them."""

    name: str
    values: tuple[str, ...]

    def to_text(self) -> str:
        return f"{self.name}={_join_values(self.values)}"

    def label(self, index: int) -> str:
        value = self.values[index]
        if self.name == "model":
            return Path(value).name.removesuffix(".safetensors") or value
        return value


def parse_axis(text: str) -> Axis:
    """``"cfg=5,7.5"`` → Axis; values may be quoted as CSV (``prompt-sr="a cat, sitting",dog``).
    Raises GridError with one line on bad input. Any thread."""
    name, sep, rest = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in AXES:
        raise GridError(f"axis {text!r}: write AXIS=V1,V2,… with AXIS one of {', '.join(AXES)}")
    try:
        row = next(csv.reader([rest], skipinitialspace=True), [])
    except csv.Error as exc:
        raise GridError(f"axis {name}: {exc}") from None
    values: list[str] = []
    for raw in (v.strip() for v in row):
        if not raw:
            continue
        values += _expand_range(name, raw)
    if not values:
        raise GridError(f"axis {name}: give at least one value ({AXIS_HELP[name]})")
    axis = Axis(name, tuple(values))
    for i in range(len(values)):  # check every value now: a typo fails before anything runs
        _check_value(axis, i)
    return axis


def _expand_range(name: str, raw: str) -> list[str]:
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)(?:\s*\(\s*\+\s*(\d+)\s*\))?", raw)
    if name in ("seed", "steps") and m:
        lo, hi, step = int(m[1]), int(m[2]), int(m[3] or 1)
        if hi < lo or step < 1:
            raise GridError(f"axis {name}: the range {raw} is empty")
        if (hi - lo) // step + 1 > MAX_JOBS:
            raise GridError(f"axis {name}: the range {raw} has more than {MAX_JOBS} values")
        return [str(v) for v in range(lo, hi + 1, step)]
    return [raw]


def _check_value(axis: Axis, index: int) -> None:
    value = axis.values[index]
    try:
        if axis.name in ("seed", "steps"):
            int(value)
        elif axis.name == "cfg":
            float(value)
        elif axis.name == "size":
            _size(value)
        elif axis.name == "sampler":
            _sampler(value)
        elif axis.name == "lora":
            _lora_value(value)
    except ValueError:
        raise GridError(f"axis {axis.name}: {value!r} is not a valid value ({AXIS_HELP[axis.name]})") from None


def _size(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", value)
    if not m:
        raise ValueError(value)
    return int(m[1]), int(m[2])


def _sampler(value: str) -> str:
    for name in SAMPLERS:
        if name.lower() == value.strip().lower():
            return name
    raise ValueError(value)


def _lora_value(value: str) -> tuple[str, float]:
    name, sep, weight = value.rpartition(":")
    return (name.strip() if sep else ""), float(weight)


_LORA_TAG = re.compile(r"<(lora|lyco):([^:>]+)((?::[^:>]*)?)((?::[^>]*)?)>", re.IGNORECASE)


def _set_lora_weight(prompt: str, name: str, weight: float) -> str:
    tags = list(_LORA_TAG.finditer(prompt))
    if not name:
        names = {t[2] for t in tags}
        if len(names) != 1:
            raise GridError("axis lora: a bare weight needs exactly one <lora:name:weight> tag in the prompt "
                            f"(found {len(names)}); write name:weight to pick one")
        name = names.pop()
    text = f"{weight:g}"
    if not any(t[2] == name for t in tags):
        return f"{prompt} <lora:{name}:{text}>"
    return _LORA_TAG.sub(lambda t: f"<{t[1]}:{t[2]}:{text}{t[4]}>" if t[2] == name else t[0], prompt)


def apply_axis(axis: Axis, index: int, request: GenerationRequest, search: str | None = None) -> GenerationRequest:
    """``request`` with value ``index`` of ``axis`` applied. ``search``: for prompt-sr, the text replaced
    (the axis's first value). Raises InvalidRequest/GridError for a value the request refuses. Any thread."""
    value = axis.values[index]
    if axis.name == "seed":
        return request.replace(seed=int(value))
    if axis.name == "cfg":
        return request.replace(guidance_scale=float(value))
    if axis.name == "steps":
        return request.replace(steps=int(value))
    if axis.name == "sampler":
        return request.replace(sampler=_sampler(value))
    if axis.name == "model":
        return request.replace(model=str(Path(value).expanduser()))
    if axis.name == "size":
        w, h = _size(value)
        return request.replace(width=w, height=h)
    if axis.name == "prompt-sr":
        search = axis.values[0] if search is None else search
        if search not in request.prompt and search not in request.negative_prompt:
            raise GridError(f"axis prompt-sr: {search!r} is not in the prompt, so there is nothing to replace")
        return request.replace(prompt=request.prompt.replace(search, value),
                               negative_prompt=request.negative_prompt.replace(search, value))
    if axis.name == "lora":
        name, weight = _lora_value(value)
        return request.replace(prompt=_set_lora_weight(request.prompt, name, weight))
    raise GridError(f"unknown axis {axis.name}")


def _join_values(values: tuple[str, ...]) -> str:
    out = []
    for v in values:
        out.append(json.dumps(v) if ("," in v or '"' in v or v != v.strip()) else v)
    return ",".join(out)


# ------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class GridJob:
    """One cell: ``cell`` is (x, y, z) indexes; ``id`` is unique per grid and makes saving idempotent."""

    id: str
    cell: tuple[int, int, int]
    request: GenerationRequest

    def describe(self, plan: GridPlan) -> str:
        parts = [f"{a.name}={a.label(i)}" for a, i in zip(plan.axes, self.cell) if a is not None]
        return ", ".join(parts) or "single image"


@dataclass(frozen=True)
class GridPlan:
    """A base request, up to three axes and the jobs they expand to (x fastest, then y, then z)."""

    grid_id: str
    base: GenerationRequest
    axes: tuple[Axis | None, Axis | None, Axis | None]
    jobs: tuple[GridJob, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a.values) if a else 1 for a in self.axes)  # type: ignore[return-value]

    def recipe(self) -> dict[str, Any]:
        """JSON-ready: enough to plan the same grid again (``plan_from_recipe``)."""
        return {"version": 1, "grid_id": self.grid_id, "base": self.base.to_dict(),
                "axes": [a.to_text() if a else None for a in self.axes]}

    def command(self) -> str:
        """The ``easel grid`` command line that re-runs this grid."""
        b = self.base
        args = ["easel", "grid", "--model", b.model, "--prompt", b.prompt]
        if b.negative_prompt:
            args += ["--negative", b.negative_prompt]
        args += ["--seed", str(b.seed), "--steps", str(b.steps), "--cfg", f"{b.guidance_scale:g}",
                 "--width", str(b.width), "--height", str(b.height), "--sampler", b.sampler]
        for flag, axis in zip(("--x", "--y", "--z"), self.axes):
            if axis is not None:
                args += [flag, axis.to_text()]
        return shlex.join(args)


def plan_grid(base: GenerationRequest, x: Axis | None, y: Axis | None = None, z: Axis | None = None,
              grid_id: str | None = None) -> GridPlan:
    """Expand the axes over ``base`` into validated jobs. A base without a seed gets one random seed shared
    by every cell (so cells differ only by their axes). Raises GridError naming the bad cell. Any thread."""
    if base.seed is None:
        base = base.replace(seed=random_seed())
    base = base.replace(batch_count=1)
    axes = (x, y, z)
    names = [a.name for a in axes if a is not None]
    if len(set(names)) != len(names):
        raise GridError(f"the axes repeat {', '.join(sorted(n for n in set(names) if names.count(n) > 1))}: "
                        "give each axis once")
    nx, ny, nz = (len(a.values) if a else 1 for a in axes)
    if nx * ny * nz > MAX_JOBS:
        raise GridError(f"the grid has {nx * ny * nz} cells; at most {MAX_JOBS} at once")
    grid_id = grid_id or secrets.token_hex(4)
    jobs = []
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                request = base
                for axis, index in zip(axes, (i, j, k)):
                    if axis is not None:
                        try:
                            request = apply_axis(axis, index, request)
                        except InvalidRequest as exc:
                            raise GridError(f"axis {axis.name}={axis.values[index]}: {exc}") from None
                jobs.append(GridJob(f"{grid_id}-{i}-{j}-{k}", (i, j, k), request))
    return GridPlan(grid_id, base, axes, tuple(jobs))


def plan_from_recipe(recipe: dict[str, Any], **changes: Any) -> GridPlan:
    """The plan a grid image recorded (``GRID_CHUNK``), with ``changes`` to the base (e.g. ``model=``)."""
    try:
        base = GenerationRequest.from_dict(recipe["base"], **changes)
        axes = [parse_axis(a) if a else None for a in recipe["axes"]]
    except (KeyError, TypeError) as exc:
        raise GridError(f"the grid recipe is incomplete ({exc})") from None
    return plan_grid(base, *axes)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe stored in a grid image made by Easel; GridError when there is none."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = im.text.get(GRID_CHUNK) if hasattr(im, "text") else None
    except OSError as exc:
        raise GridError(f"{path}: cannot read the grid image ({exc})") from None
    if not text:
        raise GridError(f"{path}: not a grid image made by Easel (no grid recipe in it)")
    try:
        return json.loads(text)
    except ValueError:
        raise GridError(f"{path}: the grid recipe in it is damaged") from None


# ------------------------------------------------------------------------------------------ run


class GridEvents(Protocol):
    """What a grid run reports, on the thread that drives it."""

    def job_started(self, job: GridJob, worker: str) -> None: ...
    def job_progressed(self, job: GridJob, step: int, total: int) -> None: ...
    def job_finished(self, job: GridJob, paths: list[Path]) -> None: ...
    def job_failed(self, job: GridJob, message: str) -> None: ...
    def note(self, line: str) -> None: ...


class SilentEvents:
    def job_started(self, job, worker): pass
    def job_progressed(self, job, step, total): pass
    def job_finished(self, job, paths): pass
    def job_failed(self, job, message): pass
    def note(self, line): pass


@dataclass
class GridRun:
    """The results of one plan as they arrive: saves each job's images once (by job id), remembers failures,
    and draws the grid. ``library`` (``engine.library.Library``) or ``out`` (a folder) says where images go.
    Methods run on the thread that drives the grid."""

    plan: GridPlan
    library: Any = None
    out: Path | None = None
    events: Any = field(default_factory=SilentEvents)
    images: dict[str, Any] = field(default_factory=dict)  # job id -> PIL image (for the grid)
    paths: dict[str, list[Path]] = field(default_factory=dict)  # job id -> saved files
    failures: dict[str, str] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> int:
        return len(self.paths)

    def finished(self, job_id: str) -> bool:
        return job_id in self.paths or job_id in self.failures or job_id in self.cancelled

    def save(self, job: GridJob, result: Result) -> list[Path] | None:
        """Save ``result`` as ``job``'s images, once: a second result for the same job id (a retried job
        whose first run also finished) is dropped and None returned."""
        with self._lock:
            if job.id in self.paths:
                return None
            self.paths[job.id] = []  # claimed: a concurrent duplicate stops here
        result = dataclasses.replace(
            result, request=result.request.replace(model=job.request.model or result.request.model),
            params=tuple(result.params) + (("Grid job", job.id),))
        try:
            if self.out is not None:
                from engine.outputs import save_result

                paths = save_result(result, self.out)
            else:
                paths = [self.library.absolute(e) for e in self.library.save(result)]
        except BaseException:
            with self._lock:
                del self.paths[job.id]
            raise
        self.record(job, result.images[0], paths)
        return paths

    def record(self, job: GridJob, image, paths: list[Path]) -> None:
        """Note ``job``'s image, saved elsewhere as ``paths`` (the app's queue saves through the gallery)."""
        self.paths[job.id] = list(paths)
        self.images[job.id] = image
        self.failures.pop(job.id, None)
        self.events.job_finished(job, list(paths))

    def fail(self, job: GridJob, message: str) -> None:
        if job.id in self.paths:
            return
        self.failures[job.id] = message
        self.events.job_failed(job, message)

    def cancel(self, job: GridJob) -> None:
        if not self.finished(job.id):
            self.cancelled.add(job.id)

    def finish(self) -> Path | None:
        """Draw and save the grid image (with whatever finished); None when nothing did."""
        if not self.images:
            return None
        image = draw_grid(self.plan, self.images, self.failures)
        from PIL.PngImagePlugin import PngInfo

        from engine.outputs import write_png_atomic

        info = PngInfo()
        info.add_itxt(GRID_CHUNK, json.dumps(self.plan.recipe(), ensure_ascii=False))
        info.add_itxt("Description", f"Easel grid {self.plan.grid_id}; re-run: {self.plan.command()}")
        folder = self.out if self.out is not None else self.library.root
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-grid-{self.plan.grid_id}.png"
        try:
            target = write_png_atomic(Path(folder) / name, image, info, overwrite=False)
        except OSError as exc:
            raise EaselError(f"could not save the grid image in {folder}: {exc.strerror or exc}") from None
        if self.out is None:
            self.library.import_files([target])  # inside the library: only indexed
        return target


def run_local(plan: GridPlan, engine, run: GridRun, cancel: threading.Event | None = None) -> None:
    """Run every job of ``plan`` on ``engine`` (its public API: ``generate``), in order, saving through ``run``.
    A job that fails for a user reason fails alone; ``cancel`` stops within one step and skips the rest.
    Runs on the engine's owning thread."""
    cancel = cancel or threading.Event()
    for job in plan.jobs:
        if cancel.is_set():
            run.cancel(job)
            continue
        if run.finished(job.id):
            continue
        run.events.job_started(job, "this machine")
        try:
            result = engine.generate(job.request, on_progress=_progress_to(run, job), cancel=cancel)
        except Cancelled:
            run.cancel(job)
            continue
        except EaselError as exc:
            run.fail(job, str(exc))
            continue
        run.save(job, result)


def _progress_to(run: GridRun, job: GridJob) -> Callable:
    return lambda p: run.events.job_progressed(job, p.step, p.total)


# ------------------------------------------------------------------------------------------ drawing

_PAD = 8


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_grid(plan: GridPlan, images: dict[str, Any], failures: dict[str, str] | None = None):
    """The labelled grid: column labels (x), row labels (y), one panel per z value side by side, and a
    legend (prompt, fixed settings, the command that re-runs it). A cell that failed shows its message.
    Runs on the caller's thread (PIL only)."""
    from PIL import Image, ImageDraw

    failures = failures or {}
    nx, ny, nz = plan.shape
    first = next(iter(images.values()))
    cw, ch = first.size
    # Cells between 128 and 384 px: tiny images stay legible, large ones keep the grid a sensible size.
    scale = 384 / max(cw, ch) if max(cw, ch) > 384 else 128 / max(cw, ch) if max(cw, ch) < 128 else 1.0
    cw, ch = max(1, int(cw * scale)), max(1, int(ch * scale))
    font_size = max(12, min(28, cw // 10))
    font = _font(font_size)
    small = _font(max(11, font_size - 4))
    x_axis, y_axis, z_axis = plan.axes
    row_label_w = (max(len(y_axis.name) + 2 + len(y_axis.label(j)) for j in range(ny)) * font_size // 2 + 3 * _PAD) if y_axis else 0
    row_label_w = min(row_label_w, max(cw, 120))
    head_h = (font_size + 2 * _PAD) * (2 if z_axis else 1) if (x_axis or z_axis) else 0
    panel_w = row_label_w + nx * cw
    width = nz * panel_w + (nz - 1) * 2 * _PAD
    legend = _legend_lines(plan, width, small)
    legend_h = len(legend) * (small.size + 4) + 2 * _PAD if hasattr(small, "size") else len(legend) * 16 + 2 * _PAD
    height = head_h + ny * ch + legend_h
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for k in range(nz):
        ox = k * (panel_w + 2 * _PAD)
        if z_axis:
            draw.text((ox + panel_w // 2, _PAD), f"{z_axis.name}: {z_axis.label(k)}", fill="black", font=font,
                      anchor="ma")
        if x_axis:
            for i in range(nx):
                draw.text((ox + row_label_w + i * cw + cw // 2, head_h - _PAD), _fit(f"{x_axis.name}: {x_axis.label(i)}", cw, font_size),
                          fill="black", font=font, anchor="md")
        for j in range(ny):
            if y_axis:
                draw.text((ox + row_label_w - _PAD, head_h + j * ch + ch // 2), _fit(f"{y_axis.name}: {y_axis.label(j)}", row_label_w,
                          font_size), fill="black", font=font, anchor="rm")
            for i in range(nx):
                job_id = f"{plan.grid_id}-{i}-{j}-{k}"
                box = (ox + row_label_w + i * cw, head_h + j * ch)
                if job_id in images:
                    canvas.paste(images[job_id].convert("RGB").resize((cw, ch)), box)
                else:
                    draw.rectangle([box, (box[0] + cw - 1, box[1] + ch - 1)], fill="#dddddd", outline="#999999")
                    message = failures.get(job_id, "not made")
                    draw.multiline_text((box[0] + 4, box[1] + 4), "\n".join(textwrap.wrap(message, max(8, cw // 7))[:6]),
                                        fill="#aa0000", font=small)
    y = head_h + ny * ch + _PAD
    for line in legend:
        draw.text((_PAD, y), line, fill="#333333", font=small)
        y += (small.size if hasattr(small, "size") else 12) + 4
    return canvas


def _fit(text: str, width: int, font_size: int) -> str:
    limit = max(4, width // max(1, font_size // 2))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legend_lines(plan: GridPlan, width: int, font) -> list[str]:
    b = plan.base
    chars = max(30, width // max(6, (font.size if hasattr(font, "size") else 12) // 2 + 1))
    axes = "; ".join(f"{n}: {a.name}" for n, a in zip("XYZ", plan.axes) if a is not None)
    lines = textwrap.wrap(f"Prompt: {b.prompt}", chars)
    if b.negative_prompt:
        lines += textwrap.wrap(f"Negative prompt: {b.negative_prompt}", chars)
    lines += textwrap.wrap(f"Axes: {axes}. Otherwise: model {Path(b.model).name}, seed {b.seed}, steps {b.steps}, "
                           f"CFG {b.guidance_scale:g}, sampler {b.sampler}, size {b.width}x{b.height}", chars)
    lines += textwrap.wrap(f"Re-run: {plan.command()}", chars)
    return lines
