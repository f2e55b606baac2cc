"""Desktop-app fixtures: offscreen Qt, a qasync loop per test, a Studio on a fake or real engine,
and a guard that fails any test leaving a QThread, a QTimer or an engine thread running."""

from __future__ import annotations

import os

# A 1600x1000 offscreen screen (the default is 800x600, which clamps window geometry and screenshots).
_SCREEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "offscreen-screen.json")
os.environ.setdefault("QT_QPA_PLATFORM", f"offscreen:configfile={_SCREEN}")
# Only the test's own folders: not the A1111/ComfyUI/HF installs of the machine running the tests.
os.environ.setdefault("EASEL_SCAN_DEFAULT_LOCATIONS", "0")

import asyncio  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import shiboken6  # noqa: E402
from PySide6.QtCore import QThread, QTimer  # noqa: E402

from tests.desktop_app.fakes import FakeEngine, make_fake_model  # noqa: E402

SCREENSHOT_DIR = Path(os.environ.get("EASEL_SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "build" / "screenshots"))


@pytest.fixture(autouse=True)
def no_leaked_threads_or_timers(monkeypatch):
    """Fail a test that leaves a QTimer active, a QThread running, or a Python thread it started alive."""
    timers: list[QTimer] = []
    qthreads: list[QThread] = []
    pending_single_shots: list[object] = []
    original_timer_start = QTimer.start
    original_thread_start = QThread.start
    original_single_shot = QTimer.singleShot

    def timer_start(self, *args):
        timers.append(self)
        return original_timer_start(self, *args)

    def thread_start(self, *args):
        qthreads.append(self)
        return original_thread_start(self, *args)

    def single_shot(msec, *args):
        if args and callable(args[-1]) and len(args) <= 2:
            token = object()
            pending_single_shots.append(token)
            fn = args[-1]

            def fire():
                pending_single_shots.remove(token)
                fn()

            return original_single_shot(msec, *args[:-1], fire)
        return original_single_shot(msec, *args)

    monkeypatch.setattr(QTimer, "start", timer_start)
    monkeypatch.setattr(QThread, "start", thread_start)
    monkeypatch.setattr(QTimer, "singleShot", staticmethod(single_shot))
    threads_before = set(threading.enumerate())
    yield
    leaked_timers = [t for t in timers if shiboken6.isValid(t) and t.isActive()]
    leaked_qthreads = [t for t in qthreads if shiboken6.isValid(t) and t.isRunning()]
    leaked_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive() and not t.daemon]
    problems = []
    if leaked_timers:
        problems.append(f"{len(leaked_timers)} QTimer(s) still active")
    if pending_single_shots:
        problems.append(f"{len(pending_single_shots)} QTimer.singleShot callback(s) still pending")
    if leaked_qthreads:
        problems.append(f"{len(leaked_qthreads)} QThread(s) still running")
    if leaked_threads:
        problems.append("threads still running: " + ", ".join(t.name for t in leaked_threads))
    for t in leaked_timers:
        t.stop()
    assert not problems, "; ".join(problems)


@pytest.fixture
def qloop(qapp):
    """A qasync loop marked running on top of pytest-qt's event processing (qtbot.wait* drive it)."""
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    for _ in range(3):  # let cancellations run
        qapp.processEvents()
    # Not loop.stop(): that calls QApplication.exit(), which would end later tests' nested loops.
    loop._QEventLoop__is_running = False  # noqa: SLF001 (qasync's already_running mode has no public stop)
    try:
        qapp.aboutToQuit.disconnect(loop._after_run_forever)
    except (RuntimeError, TypeError, AttributeError):
        pass
    asyncio.events._set_running_loop(None)
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_model(data_dir) -> Path:
    return make_fake_model(data_dir / "models" / "fake-model.safetensors")


@pytest.fixture
def make_studio(qapp, qloop, qtbot):
    """Build Studios (window shown, engine started); each is shut down at the end of the test."""
    from desktop_app.app import Studio

    studios: list[Studio] = []

    def make(data_dir: Path, engine=None, *, wait_ready: bool = True, wait_models: bool = True,
             ask_quit: bool = False, **kwargs) -> Studio:
        factory = kwargs.pop("engine_factory", None) or ((lambda: engine) if engine is not None else None)
        studio = Studio(data_dir, engine_factory=factory, app=qapp, **kwargs)
        studios.append(studio)
        if not ask_quit:  # the quit question is modal: only tests of it (ask_quit=True) get it
            studio.window.ask_quit = lambda: "keep"
        qtbot.addWidget(studio.window)
        studio.window.show()
        studio.start()
        if wait_ready:
            qtbot.waitUntil(lambda: studio.bridge.state in ("ready", "failed"), timeout=120_000)
        if wait_models:
            qtbot.waitUntil(lambda: not studio.catalog.scanning and not studio.actions._tasks, timeout=30_000)
        return studio

    yield make
    for studio in studios:
        studio.shutdown()


def wait_job_gone(qtbot, studio, job, timeout=30_000):
    qtbot.waitUntil(lambda: job.status.value in ("done", "failed", "cancelled"), timeout=timeout)


def screenshot(widget, name: str) -> Path:
    path = SCREENSHOT_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)  # names may hold a folder ("walkthrough/01-...png")
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()  # let pending layout passes run: labels just re-texted get their width
    widget.grab().save(str(path))
    return path
