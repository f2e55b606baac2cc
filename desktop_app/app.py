"""Composition root: QApplication, the qasync loop, logging, and the wiring of state, bridge and window.

Nothing here imports torch or diffusers: the engine thread does that after the window is shown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.handlers
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop_app import pyside_support
from desktop_app.bridge import EngineBridge
from desktop_app.state.actions import StudioActions
from desktop_app.state.errors import ErrorReporter, RecentLogHandler
from desktop_app.state.jobs import JobQueue
from desktop_app.state.models import ModelCatalog
from desktop_app.state.params import GenerationParameters
from desktop_app.state.gallery import GalleryState
from desktop_app.state.session import SessionStore
from desktop_app.state.settings import SettingsStore
from desktop_app.state.status import EngineStatus
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.theme import apply_app_theme, apply_style_sheet, apply_theme
from engine import paths
from engine.library import LibraryLocked

log = logging.getLogger("easel.app")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"


def setup_logging(data_dir: Path) -> tuple[Path, list[logging.Handler], RecentLogHandler]:
    """A rotating log file in <data>/logs plus an in-memory excerpt for the error banner."""
    log_path = paths.logs_dir(data_dir) / "easel.log"
    file_handler = logging.handlers.RotatingFileHandler(log_path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler.setLevel(logging.INFO)
    recent = RecentLogHandler()
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(recent)
    return log_path, [file_handler, recent], recent


class Studio:
    """Builds and owns one window's worth of state, the engine bridge and the window.

    ``engine_factory`` and ``saver`` default to the real engine (tests may pass a fake engine).
    Call ``start()`` once a qasync loop is running and the window is shown.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        engine_factory: Callable[[], Any] | None = None,
        saver: Callable[..., list[Path]] | None = None,
        app: QApplication | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.app = app or QApplication.instance()
        self.log_path, self._log_handlers, recent = setup_logging(self.data_dir)
        log.info("Easel starting; data folder %s", self.data_dir)
        self.reporter = ErrorReporter(recent)
        self.settings = SettingsStore(paths.settings_file(self.data_dir))
        self.bridge = EngineBridge(engine_factory or self._make_engine,
                                   saver or (lambda result, folder: self.gallery.saver(result, folder)),
                                   upscale_saver=lambda result, texts, folder: self.gallery.save_upscaled(result, texts, folder))
        try:
            # One instance per library: a second one stops here (LibraryLocked) and says so.
            self.gallery = GalleryState(paths.library_dir(self.data_dir), self.bridge, self.reporter,
                                        embed_metadata=lambda: self.settings.embed_metadata)
        except BaseException:
            self.bridge.shutdown()
            self._remove_log_handlers()
            raise
        self.params = GenerationParameters()
        self.params.load_dict(self.settings.parameters)
        self.session = SessionStore(self.data_dir / "session")
        self.catalog = ModelCatalog()
        self.status = EngineStatus()
        self.queue = JobQueue(self.bridge, self.reporter, paths.library_dir(self.data_dir))
        self.actions = StudioActions(
            params=self.params, queue=self.queue, catalog=self.catalog, gallery=self.gallery,
            settings=self.settings, status=self.status, bridge=self.bridge, reporter=self.reporter,
            data_dir=self.data_dir,
        )
        self.actions.canvas.autosave_path = self.data_dir / "session" / "canvas-autosave.ora"
        # The style and palette before the window is built (the widgets are made with them, nothing
        # is re-polished); the style sheets after it: set before, every widget added to the tree was
        # re-polished on each reparenting (~35 ms of the start-up).
        self.theme = apply_app_theme(self.app, self.settings.theme)
        self.window = MainWindow(self.actions, str(self.log_path))
        apply_style_sheet(self.window.styled_widgets())
        self.window.restore_layout(self.settings)
        self.window.closing.connect(self.shutdown)
        self.window.theme_requested.connect(self._on_window_theme_requested)
        if self.settings.notice:
            self.reporter.notice(self.settings.notice)
        self._closed: asyncio.Future[None] | None = None
        self.is_shut_down = False

    def _make_engine(self) -> Any:
        """Runs on the engine thread: the real engine, resolving LoRA/embedding names in the library
        the window shows, and remembering memory presets in the data folder."""
        from desktop_app.state.cluster import make_engine
        from engine.engine import Engine

        # Settings › Engine › "Use the engine on a cluster" makes it a RemoteEngine (engine.farm.remote).
        return make_engine(self.data_dir, self.actions.library,
                           lambda: Engine(library=self.actions.library, state_dir=self.data_dir))

    def start(self) -> None:
        """Start the engine thread (imports torch there) and scan the model folders. GUI thread."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        self.bridge.start()
        self.gallery.start()
        self.actions.rescan_models()
        self._restore_session()

    def _restore_session(self) -> None:
        """The queue and the canvas as the last quit left them (the jobs run once the engine is ready);
        after a crash (no session saved), the canvas as last autosaved."""
        autosave = self.actions.canvas.autosave_path
        crashed = autosave is not None and autosave.is_file() and not self.session.file.is_file()
        jobs, canvas, problems = self.session.restore(self.queue, self.actions.document, self.params)
        if crashed:
            outcome = self.actions.canvas.restore_autosave()
            canvas = canvas or outcome == "restored"
            if outcome and outcome != "restored":
                problems.append(outcome)
        kept = ([f"{jobs} job{'s' if jobs > 1 else ''} (queued again)"] if jobs else []) + (["the canvas"] if canvas else [])
        if kept:
            self.reporter.notice("Restored from the last session: " + " and ".join(kept) + ".")
        for problem in problems:
            self.reporter.report(f"Not everything of the last session came back: {problem}.")

    async def wait_closed(self) -> None:
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await self._closed

    def shutdown(self) -> None:
        """Save settings, cancel jobs and stop the engine thread. Safe to call twice. GUI thread."""
        if self.is_shut_down:
            return
        self.is_shut_down = True
        log.info("shutting down")
        try:
            self.settings.parameters = self.params.to_dict()
            self.window.save_layout(self.settings)
            self.settings.save()
        except Exception:
            log.exception("saving settings failed")
        autosave = self.actions.canvas.stop_autosave()
        try:  # before the queue stops: the running job is kept too
            if self.window.quit_choice == "discard":
                self.session.discard()
            else:
                self.session.save(self.queue, self.actions.document, self.params)
        except Exception:
            log.exception("saving the queue and the canvas failed")
        self.queue.stop()
        self.actions.stop()
        self.gallery.stop()
        self.bridge.shutdown()  # joins the I/O thread: an autosave still writing is done now
        if autosave is not None and (self.window.quit_choice == "discard" or self.session.file.is_file()):
            autosave.unlink(missing_ok=True)  # the session holds the canvas, or the user dropped it
        self.gallery.close()
        log.info("engine thread stopped")
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._remove_log_handlers()

    def _remove_log_handlers(self) -> None:
        root = logging.getLogger()
        for handler in self._log_handlers:
            root.removeHandler(handler)
            handler.close()

    def _on_window_theme_requested(self, theme: str) -> None:
        self.settings.theme = theme
        self.theme = apply_theme(self.app, theme, self.window.styled_widgets())
        try:
            self.settings.save()
        except OSError as exc:
            self.reporter.report(f"Could not save settings: {exc}", exc)


def _install_error_hooks(studio: Studio, loop: asyncio.AbstractEventLoop) -> None:
    """No exception escapes a slot or a task unseen: it becomes a banner and a log record."""

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        try:
            studio.reporter.report(f"Something went wrong: {kind.__name__}: {exc}", exc.with_traceback(tb))
        except Exception:
            sys.__excepthook__(kind, exc, tb)

    def loop_handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "an asynchronous task failed")
        try:
            studio.reporter.report(f"Something went wrong: {exc or message}", exc)
        except Exception:
            log.error("unhandled error in the event loop: %s", message)

    sys.excepthook = excepthook
    loop.set_exception_handler(loop_handler)


def run(qt_args: list[str], data_dir: str | None = None, smoke_test: bool = False, *,
        engine_factory: Callable[[], Any] | None = None, on_shown: Callable[[Studio], None] | None = None) -> int:
    """Open the main window and run until it is closed. Returns the exit code.

    ``engine_factory`` replaces the real engine and ``on_shown(studio)`` runs once the window is
    shown (for tests that drive a whole process). When the engine thread is still inside a step at
    quit (see EngineBridge.shutdown), the process exits here without joining it.
    """
    import qasync

    temp: tempfile.TemporaryDirectory[str] | None = None
    if smoke_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        if data_dir is None:
            temp = tempfile.TemporaryDirectory(prefix="easel-smoke-")
            data_dir = temp.name
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Easel")
    app.setApplicationDisplayName("Easel")
    app.setDesktopFileName("easel")  # matches the installed easel.desktop (icon and name on Wayland)
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        studio = Studio(paths.data_dir(data_dir), app=app, engine_factory=engine_factory)
    except LibraryLocked as exc:
        message = f"Easel is already running: {exc}."
        print(f"easel: {exc}", file=sys.stderr)
        if QGuiApplication.platformName() not in ("offscreen", "minimal"):
            QMessageBox.information(None, "Easel is already running", message)
        if temp is not None:
            temp.cleanup()
        return 1
    _install_error_hooks(studio, loop)
    studio.window.show()
    app.processEvents()
    if not gc.isenabled():  # the launcher paused the collector for the start-up
        gc.freeze()  # what the start-up made stays: later collections skip it
        gc.enable()
    if os.environ.get("EASEL_REPORT_SHOWN"):
        # For bench/bench_app_startup.py: wall-clock time the window was first shown.
        print(f"EASEL_WINDOW_SHOWN {time.time():.6f}", flush=True)
        heavy = [m for m in ("numpy", "PIL", "torch", "diffusers", "transformers") if m in sys.modules]
        print(f"EASEL_IMPORTED_BEFORE_SHOWN {','.join(heavy) or '-'}", flush=True)
        print(f"EASEL_GC_ENABLED_AFTER_SHOWN {gc.isenabled()}", flush=True)
        if os.environ.get("EASEL_QUIT_WHEN_SHOWN"):
            studio.shutdown()
            pyside_support.write()
            return 0
    outcome: dict[str, int] = {"code": 0}

    async def main() -> None:
        studio.start()
        if on_shown is not None:
            on_shown(studio)
        if smoke_test:
            outcome["code"] = await _smoke(studio)
            studio.window.close()
        await studio.wait_closed()

    try:
        with loop:
            loop.run_until_complete(main())
    finally:
        studio.shutdown()
        if temp is not None:
            temp.cleanup()
    pyside_support.write()  # once per PySide build: later launches skip compiling its support code
    if studio.bridge.engine_stuck:
        # Python joins every executor thread at exit, which would wait out the step after all.
        # Everything worth keeping was saved in shutdown; the OS frees the model's memory.
        print("easel: the engine was still inside a step; quitting without waiting for it", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(outcome["code"])
    return outcome["code"]


async def _smoke(studio: Studio) -> int:
    """--smoke-test: make a tiny model, generate one image into the temp data folder, check the PNG."""
    try:
        await studio.bridge.wait_ready()
        task = studio.actions.make_demo_model()
        await task
        if not studio.catalog.usable:
            print("smoke test FAILED: the demo model was not found", file=sys.stderr)
            return 1
        p = studio.params
        p.prompt, p.width, p.height, p.steps, p.batch_count = "smoke test", 64, 64, 2, 1
        p.seed_mode, p.seed = "fixed", 1
        job = studio.actions.generate()
        if job is None:
            print(f"smoke test FAILED: cannot generate ({studio.actions.generate_blocked_reason})", file=sys.stderr)
            return 1
        done = asyncio.get_running_loop().create_future()
        studio.queue.job_removed.connect(lambda j: done.done() or j is not job or done.set_result(j.status.value))
        status = await asyncio.wait_for(done, timeout=300)
        pngs = sorted(studio.queue.output_dir.glob("*.png"))
        if status != "done" or not pngs:
            print(f"smoke test FAILED: job {status}, {len(pngs)} PNG(s); {job.error or ''}", file=sys.stderr)
            return 1
        print(f"smoke test OK: {pngs[0].name}, {studio.status.runtime}")
        return 0
    except Exception as exc:
        print(f"smoke test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
