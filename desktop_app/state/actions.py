"""The actions the window calls (generate, cancel, add a folder...) and whether Generate is possible.

Widgets call these; they never reach the bridge or the engine themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from desktop_app.bridge import EngineBridge, Outcome
from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.canvas_actions import CanvasActions, CanvasJob
from desktop_app.state.errors import ErrorReporter
from desktop_app.state.families import (
    ModelDefaults,
    edits_by_instruction,
    inpaint_partner,
    instruction_refusal,
    kind_label,
    mode_blocked,
    region_refusal,
)
from desktop_app.state.image_jobs import ImageJobs
from desktop_app.state.tasks import BackgroundTasks
from desktop_app.state.jobs import Job, JobQueue
from desktop_app.state.models import ModelCatalog, scan_library
from desktop_app.state.params import GenerationParameters
from desktop_app.state.gallery import GalleryState, OpenedImage
from desktop_app.state.gallery_model import UnsavedImage
from desktop_app.state.session import SessionStore, WorkInProgress
from desktop_app.state.settings import SettingsStore
from desktop_app.state.status import EngineStatus
from desktop_app.state.step_times import StepTimes
from engine.api import GenerationRequest, InvalidRequest, Mode
from engine.library import LibraryEntry

log = logging.getLogger(__name__)


class StudioActions(QObject):
    generate_enabled_changed = Signal(bool, str)  # enabled, the reason when not
    demo_model_made = Signal(str)
    settings_restored = Signal(str)  # the image path

    def __init__(
        self,
        *,
        params: GenerationParameters,
        queue: JobQueue,
        catalog: ModelCatalog,
        gallery: GalleryState,
        settings: SettingsStore,
        status: EngineStatus,
        bridge: EngineBridge,
        reporter: ErrorReporter,
        data_dir: Path,
        document: CanvasDocument | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.params, self.queue, self.catalog, self.gallery = params, queue, catalog, gallery
        self.settings, self.status, self.bridge, self.reporter = settings, status, bridge, reporter
        self.data_dir = data_dir
        self.demo_models_dir = data_dir / "models"
        from engine.models import ModelLibrary  # torch-free

        # The installs of A1111 / ComfyUI / InvokeAI and the Hugging Face cache are scanned in place
        # (EASEL_SCAN_DEFAULT_LOCATIONS=0 turns that off, e.g. for tests).
        from desktop_app.state.downloads import DownloadState

        self.downloads = DownloadState(bridge, reporter)
        self.downloads.finished.connect(self._on_downloads_finished)
        self.library = ModelLibrary(self.model_folders(), state_dir=data_dir,
                               include_defaults=os.environ.get("EASEL_SCAN_DEFAULT_LOCATIONS", "1") != "0")
        self._tasks = BackgroundTasks(reporter, "Something went wrong")
        self._spawn = self._tasks.spawn
        self._enabled: tuple[bool, str] = (False, "")
        self.step_times = StepTimes(data_dir / "step_times.json")
        # Asked before a job measured to take very long here; the window puts up the question.
        self.confirm_long_job: Callable[[str], bool] = lambda _line: True
        self.document = document or CanvasDocument(parent=self)
        self.canvas = CanvasActions(self.document, params, bridge, reporter, status, self._spawn, parent=self)
        self.canvas.library = self.library  # Make from picture finds the depth model there
        self.canvas.blocked_changed.connect(self._update_enabled)
        self.canvas.regions_refusal = lambda model: region_refusal(catalog.find(model))
        self.canvas.discarded.connect(gallery.trash_files)  # a discarded result does not stay in the gallery
        self.canvas.live.applied.connect(self.save_live_frame)  # live frames reach the gallery only when applied
        # Picking a model of another kind applies its family's defaults (size, steps, CFG, sampler).
        self.model_defaults = ModelDefaults(params, catalog, parent=self)
        self.images = ImageJobs(queue=queue, catalog=catalog, gallery=gallery, document=self.document, params=params,
                                bridge=bridge, reporter=reporter, spawn=self._spawn, parent=self)

        bridge.state_changed.connect(self._on_bridge_state_changed)
        bridge.runtime_changed.connect(status.set_runtime)
        catalog.models_changed.connect(self._on_catalog_models_changed)
        catalog.scanning_changed.connect(lambda _s: self._update_enabled())
        params.model_changed.connect(lambda _m: self._update_enabled())
        params.model_changed.connect(lambda _m: self._offer_words())
        catalog.models_changed.connect(lambda _m: self._offer_words())
        settings.model_folders_changed.connect(lambda _f: self.rescan_models())
        queue.job_finished.connect(self._on_queue_job_finished)
        queue.job_started.connect(lambda job: status.set_activity(
            f"{'Upscaling' if job.upscale is not None else 'Generating'} “{job.title}”"))
        queue.phase_changed.connect(lambda text: None if queue.running is not None and queue.running.cancel.is_set()
                                    else status.set_activity(text))
        queue.job_cancelling.connect(lambda job: status.set_activity(f"Cancelling “{job.title}”…"))
        queue.busy_changed.connect(lambda busy: None if busy else status.set_activity(""))
        self._update_enabled()

    # -- generate / cancel --------------------------------------------------------------------

    @property
    def generate_enabled(self) -> bool:
        return self._enabled[0]

    @property
    def generate_blocked_reason(self) -> str:
        return self._enabled[1]

    def generate(self) -> Job | None:
        """Queue a job from the current parameters (runs now when idle). Returns None if refused."""
        enabled, reason = self._enabled
        if not enabled:
            self.reporter.notice(f"Cannot generate yet: {reason}")
            return None
        origin = None
        try:
            request = self.params.to_request()
            if self.params.edit_mode != "txt2img":
                request, origin = self.canvas.build_request(request)
            if self.params.edit_mode == "inpaint":
                request = self._with_inpaint_partner(request)
            request = self.canvas.with_guides(request)  # the visible control, reference and region layers steer every mode
        except InvalidRequest as exc:
            self.reporter.report(f"Check the settings: {exc}")
            return None
        warning = self.step_times.warning(request, self.device)
        if warning and not self.confirm_long_job(warning):
            self.status.set_activity(self.step_times.declined(warning))
            return None
        self.params.record_seed(request.seed)
        return self.queue.enqueue(request, origin)

    def _with_inpaint_partner(self, request: GenerationRequest) -> GenerationRequest:
        """An inpaint / outpaint of a model whose family has a better model for it in the library (FLUX.1
        [dev] / [schnell] -> FLUX.1 Fill) runs on that model, at its own guidance, with a notice saying so."""
        info = self.catalog.find(request.model)
        partner = inpaint_partner(info, self.catalog.models) if request.mode is Mode.INPAINT else None
        if partner is None:
            return request
        from engine.families import defaults

        own, theirs = defaults(info), defaults(partner)
        guidance = theirs["guidance_scale"]  # its guidance is on another scale than the picked model's
        # A step-distilled model's few steps (FLUX.1 [schnell]: 4) are too few for the partner: it runs its own.
        steps = theirs["steps"] if own["steps"] < theirs["steps"] else request.steps
        self.reporter.notice(f"Inpainting with {partner.name} ({kind_label(partner)}) instead of {info.name} "
                             f"({kind_label(info)}): it is made for inpainting and outpainting ({steps} steps, "
                             f"guidance {guidance:g}).")
        return request.replace(model=partner.path, guidance_scale=guidance, steps=steps)

    def _offer_words(self) -> None:
        """Edit with words is offered while the chosen model edits by instruction (asked once it is known)."""
        info = self.catalog.find(self.params.model)
        if info is not None or not self.params.model:
            self.canvas.set_words_offered(edits_by_instruction(info), instruction_refusal(info))

    @property
    def device(self) -> str:
        """The device the engine runs on ("" until it has started)."""
        return str(self.status.runtime.get("device", "") or "")

    def edit_image(self, image: Any, source: str | None = None, mode: str | None = None) -> Any:
        """Open ``image`` (a file path or a QImage) on the canvas to edit it, in edit ``mode``
        ("img2img" or "inpaint"; None: inpaint unless an editing mode is already chosen).

        The one way in for everything that edits an image: the viewer's and the gallery's "Edit in
        canvas", "Use as img2img source" and "Use as inpaint source". The canvas is the source.
        """
        return self.canvas.edit_image(image, source, mode)

    def edit_in_canvas(self, item: Any, mode: str | None = None) -> Any:
        """Open a gallery item (a library image, an image shown from elsewhere, or one kept in
        memory after a failed save) on the canvas in ``mode``. Returns None when there is none."""
        if isinstance(item, UnsavedImage):
            return self.edit_image(item.image.copy(), f"unsaved image (seed {item.seed})", mode)
        if isinstance(item, LibraryEntry):
            return self.edit_image(self.gallery.absolute(item), mode=mode)
        if isinstance(item, OpenedImage):
            return self.edit_image(item.path, mode=mode)
        return None

    def work_in_progress(self) -> WorkInProgress:
        """What a quit now would stop or leave (queued jobs, an edited canvas), for the window to ask."""
        return SessionStore.work_in_progress(self.queue, self.document)

    def cancel_current(self) -> bool:
        return self.queue.cancel_running()

    def reuse_last_seed(self) -> bool:
        return self.params.reuse_last_seed()

    # -- models -------------------------------------------------------------------------------

    def model_folders(self) -> list[str]:
        """The folders scanned: the data folder's own models folder first, then the user's."""
        return [str(self.demo_models_dir)] + self.settings.model_folders

    def add_model_folder(self, folder: str) -> asyncio.Task[None] | None:
        """Add a folder of models and rescan; the status bar says what was found there."""
        if not Path(folder).is_dir():
            self.reporter.report(f"“{folder}” is not a folder.")
            return None
        name = Path(folder).name or folder
        added = self.settings.add_model_folder(folder)  # a new folder rescans (model_folders_changed)
        self.status.set_activity(f"Scanning {name} for models…")
        task = self._scan_task if added and self._scan_task is not None else self.rescan_models()
        task.add_done_callback(lambda _t: self._say_found_in(folder, added))
        return task

    def _say_found_in(self, folder: str, added: bool) -> None:
        root = str(Path(folder).expanduser().resolve())
        found = [m for m in self.catalog.models if str(Path(m.path).resolve()).startswith(root)]
        usable = sum(m.usable for m in found)
        what = (f"{len(found)} model file{'s' if len(found) != 1 else ''} ({usable} usable)" if found
                else "no model files")
        self.status.set_activity(f"{'Added' if added else 'Rescanned'} {Path(folder).name or folder}: {what}.")

    _scan_task: asyncio.Task[None] | None = None

    def rescan_models(self) -> asyncio.Task[None]:
        self._scan_task = self._spawn(self._rescan())
        return self._scan_task

    async def _rescan(self) -> None:
        self.catalog.set_scanning(True)
        self.library.folders = self.model_folders()
        try:
            entries = await self.bridge.run_io(scan_library, self.library)
        except Exception as exc:
            self.reporter.report(f"Scanning the model folders failed: {exc}", exc)
            entries = []
        finally:
            self.catalog.set_scanning(False)
        self.catalog.set_entries(entries)

    def _on_downloads_finished(self, path: str) -> None:
        """A download landed in the hub cache: list it (adding its folder when the cache is not scanned)
        and pick it when it is a checkpoint."""
        if not any(path.startswith(r.path) for r in self.library.roots()):
            self.settings.add_model_folder(path)
        self.rescan_models().add_done_callback(lambda _t: self._pick_if_usable(path))
        repo = Path(path).parent.parent.name.removeprefix("models--").replace("--", "/")
        self.reporter.notice(f"Downloaded {repo}.")

    def _pick_if_usable(self, path: str) -> None:
        info = self.catalog.find(path)
        if info is not None and info.usable:
            self.params.model = path

    def insert_lora(self, name: str, weight: float = 0.8) -> None:
        """Append ``<lora:name:weight>`` to the prompt (A1111 syntax), once."""
        tag = f"<lora:{name}:{weight:g}>"
        prompt = self.params.prompt
        if f"<lora:{name}:" in prompt or f"<lora:{name}>" in prompt:
            self.reporter.notice(f"The prompt already uses the LoRA “{name}”: change its weight in the prompt.")
            return
        self.params.prompt = (prompt.rstrip() + (" " if prompt.strip() else "") + tag)

    def convert_model(self, path: str) -> asyncio.Task[None]:
        """Convert a pickle to .safetensors in a separate process (the caller asked the user first)."""
        return self._spawn(self._convert(path))

    async def _convert(self, path: str) -> None:
        from engine.convert import convert_to_safetensors

        self.status.set_activity(f"Converting {Path(path).name} to .safetensors…")
        try:
            out = await self.bridge.run_io(convert_to_safetensors, path)
        except Exception as exc:
            self.reporter.report(str(exc), exc)
            return
        finally:
            self.status.set_activity("")
        self.reporter.notice(f"Converted: {out.name} is beside the original.")
        await self._rescan()

    def make_demo_model(self) -> asyncio.Task[None]:
        return self._spawn(self._make_demo_model())

    async def _make_demo_model(self) -> None:
        dest = self.demo_models_dir / "easel-demo-tiny"
        self.status.set_activity("Making a tiny demo model…")
        try:
            path = await self.bridge.run_on_engine_thread(_make_test_model, dest)
        except Exception as exc:
            self.reporter.report(f"Making the demo model failed: {exc}", exc)
            return
        finally:
            self.status.set_activity("")
        await self._rescan()
        self.params.model = str(path)
        self.demo_model_made.emit(str(path))

    # -- internals ----------------------------------------------------------------------------

    def save_live_frame(self, frame: Any) -> asyncio.Task[None]:
        """An applied live result goes to the gallery (saved with its metadata, as a canvas job's result)."""
        return self._spawn(self._save_live_frame(frame))

    async def _save_live_frame(self, frame: Any) -> None:
        try:
            saved = await self.bridge.run_on_engine_thread(self.bridge.save, frame.result, self.queue.output_dir)
        except Exception as exc:  # a full disk: the layer is on the canvas all the same
            self.reporter.report(f"The applied live result could not be saved to the gallery: {exc}", exc)
            return
        paths = [Path(getattr(s, "absolute_path", s)) for s in saved]
        self.gallery.on_job_finished(Outcome(frame.result, paths, [frame.image], frame.seconds, saved), show=False)

    def stop(self) -> None:
        self.canvas.live.stop()
        self.downloads.stop()
        self._tasks.cancel_all()

    def _on_bridge_state_changed(self, state: str) -> None:
        self.status.set_engine_state(state)
        if state == "failed":
            self.reporter.report(
                f"The engine could not start: {self.bridge.error}. Easel cannot generate until this is fixed."
            )
        self._update_enabled()

    def _on_catalog_models_changed(self, models: list) -> None:
        usable = [m.path for m in models if m.usable]
        if usable and self.params.model not in usable:
            self.params.model = usable[0]
        self._update_enabled()

    def _on_queue_job_finished(self, job: Job, outcome: Outcome) -> None:
        result = outcome.result
        from_canvas = isinstance(job.origin, CanvasJob)
        # Every result goes into the gallery; a canvas edit's results come back over the canvas as
        # candidates, so the gallery does not take the view from them.
        self.gallery.on_job_finished(outcome, show=not from_canvas)
        self.params.record_seed(result.seeds[0] if result.seeds else result.request.seed or 0)
        self.status.set_last_seconds(outcome.seconds)
        self.step_times.record(result)
        if from_canvas:
            self.canvas.on_job_finished(job, outcome)

    # -- from an image: restore its settings, show one from elsewhere ---------------------------

    def restore_settings(self, path: Path) -> asyncio.Task[None]:
        """Fill the prompt panel from the settings stored in the image at ``path`` (any tool's)."""
        return self._spawn(self._restore_settings(Path(path)))

    async def _restore_settings(self, path: Path) -> None:
        from desktop_app.state.restore import apply_metadata, cached_hash_function, find_model
        from engine.metadata import read_metadata

        meta = await self.bridge.run_io(read_metadata, path)
        if not meta.found:
            self.reporter.notice(f"{path.name} has no generation settings stored in it, so there is nothing to restore.")
            return
        model = await self.bridge.run_io(find_model, meta, self.catalog.models,
                                         cached_hash_function(self.gallery.library.index))
        with self.model_defaults.suspended():  # the image's own settings win over the model's defaults
            notes = apply_metadata(self.params, meta, model)
        # Restored settings remake that image: Generate makes a new image, not an edit of the canvas
        # (its img2img/inpaint source is not in the file).
        self.params.edit_mode = "txt2img"
        tool = {"easel": "Easel", "a1111": "A1111", "comfyui": "ComfyUI", "invokeai": "InvokeAI",
                "fooocus": "Fooocus", "nmkd": "NMKD"}.get(meta.source, meta.source)
        message = f"Restored the settings of {path.name} (made with {tool})"
        if notes:
            self.reporter.notice(message + ". Note: " + "; ".join(notes) + ".")
        else:
            self.status.set_activity(message)
        self.settings_restored.emit(str(path))

    def open_image(self, path: Path) -> asyncio.Task[None]:
        """Show an image from anywhere (dropped on the gallery) in the viewer; its settings can then
        be restored, and "Edit in canvas" edits it. Opening to edit is ``canvas.open_file``."""
        return self._spawn(self._open_image(Path(path)))

    async def _open_image(self, path: Path) -> None:
        from engine.metadata import read_metadata

        if not path.is_file():
            self.reporter.report(f"“{path}” is not a file.")
            return
        meta = await self.bridge.run_io(read_metadata, path)
        self.gallery.set_current(OpenedImage(path, meta))
        if not meta.found:
            self.reporter.notice(f"{path.name} has no generation settings stored in it: it is shown, "
                                 "but there are no settings to restore.")

    def _update_enabled(self) -> None:
        state = self.bridge.state
        if state in ("stopped", "starting"):
            value = (False, "the engine is starting (loading torch and diffusers)")
        elif state == "failed":
            value = (False, f"the engine could not start: {self.bridge.error}")
        elif state == "closed":
            value = (False, "the engine has stopped")
        elif not self.params.model:
            if self.catalog.scanning:
                value = (False, "scanning model folders…")
            elif not self.catalog.usable:
                value = (False, "no model: add a folder of models")
            else:
                value = (False, "choose a model")
        elif (info := self.catalog.find(self.params.model)) is not None and not info.usable:
            value = (False, f"{info.name} cannot be used: {info.problem or 'it is a ' + info.kind}")
        elif info is None and not Path(self.params.model).exists():
            value = (False, f"the model {Path(self.params.model).name} is missing")
        elif reason := mode_blocked(info, self.params.edit_mode):
            value = (False, reason)
        elif reason := self.canvas.blocked_reason():
            value = (False, reason)
        else:
            value = (True, "")
        if value != self._enabled:
            self._enabled = value
            self.generate_enabled_changed.emit(*value)


def _make_test_model(dest: Path) -> Path:
    """Engine thread: builds a tiny random-weight model (imports torch)."""
    from engine.testmodels import make_test_model

    return Path(make_test_model(dest))
