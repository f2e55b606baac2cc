"""The bridge's two hops back to the GUI thread under load: progress from a fast engine coalesces into
the newest step (keeping the newest preview) instead of a backlog the window works through late, and
thumbnails load newest request first, dropping the oldest beyond ``max_pending`` (scrolled away)."""

from __future__ import annotations

import asyncio
import threading

from PySide6.QtGui import QColor, QImage

from engine.api import GenerationRequest
from tests.desktop_app.fakes import FakeEngine, colour_for

WAIT_S = 30  # bounds on waits for the other thread: never reached unless something is broken


def test_progress_from_a_fast_engine_reaches_a_busy_window_as_the_newest_step_with_the_newest_preview(qloop, qtbot):
    from desktop_app.bridge import EngineBridge

    engine = FakeEngine(preview_every=7)  # previews at steps 7, 14, 21, 28, ..., 40
    engine.hold_at_step = 30
    first_delivered, engine_at_30 = threading.Event(), threading.Event()

    def on_step(step: int) -> None:  # engine thread, just after reporting ``step``
        if step == 1:
            assert first_delivered.wait(WAIT_S)  # step 1 reaches the window before step 2 is reported
        if step == 30:
            engine_at_30.set()

    engine.on_step = on_step
    delivered = []

    def on_progress(update) -> None:  # GUI thread
        delivered.append(update)
        if len(delivered) == 1:
            # The window is busy (a long paint, say) while the engine reports steps 2..30.
            first_delivered.set()
            assert engine_at_30.wait(WAIT_S)

    bridge = EngineBridge(engine_factory=lambda: engine)
    try:
        bridge.start()
        qtbot.waitUntil(lambda: bridge.state == "ready", timeout=30_000)
        request = GenerationRequest(prompt="fast", seed=3, steps=40, width=64, height=64)
        job = asyncio.ensure_future(bridge.generate(request, cancel=threading.Event(), save_to=None,
                                                    on_progress=on_progress))
        qtbot.waitUntil(lambda: len(delivered) >= 2, timeout=30_000)
        # The 29 updates made while the window was busy arrive as one: the newest step, and the newest
        # preview (step 28's: steps 29 and 30 had none) rather than none.
        assert [u.progress.step for u in delivered] == [1, 30]
        preview = delivered[1].preview
        assert preview is not None
        expected = tuple(int(c * 28 / 40) for c in colour_for(3))
        assert preview.pixelColor(0, 0) == QColor(*expected)
        engine.release()
        qtbot.waitUntil(job.done, timeout=30_000)
        steps = [u.progress.step for u in delivered]
        assert steps == sorted(steps) and steps[-1] == 40  # never backwards; the bar ends full
        assert job.result().images[0].size().toTuple() == (64, 64)
    finally:
        engine.release()
        bridge.shutdown()


def _solid(colour: str) -> QImage:
    image = QImage(4, 4, QImage.Format.Format_RGB32)
    image.fill(QColor(colour))
    return image


def test_thumbnails_load_newest_request_first_and_drop_the_oldest_beyond_max_pending(qloop, qtbot):
    from desktop_app.bridge import ThumbnailLoader

    loader = ThumbnailLoader(max_pending=4)
    busy, free = threading.Event(), threading.Event()
    ran: list[int] = []
    arrived: list[int] = []

    def job(key: int):
        def load() -> QImage:  # the thumbnail thread
            ran.append(key)
            if key == 0:
                busy.set()
                assert free.wait(WAIT_S)  # a slow file keeps the thread busy while the user scrolls on
            return _solid("teal")
        return load

    def deliver(key: int, image) -> None:  # GUI thread
        assert image is not None and image.pixelColor(0, 0) == QColor("teal")
        arrived.append(key)

    try:
        assert loader.request(0, job(0), deliver) == []
        assert busy.wait(WAIT_S)
        dropped = []
        for key in range(1, 11):  # scrolling through ten more rows, the newest last
            dropped += loader.request(key, job(key), deliver)
        assert dropped == [1, 2, 3, 4, 5, 6]  # the oldest, scrolled away: handed back to ask again later
        assert loader.request(8, job(8), deliver) == []  # painted again: moves up to newest
        free.set()
        qtbot.waitUntil(lambda: len(arrived) == 5, timeout=30_000)
        assert arrived == [0, 8, 10, 9, 7]  # what is on screen now first
        assert ran == [0, 8, 10, 9, 7]  # the dropped ones cost no work
        loader.request(1, job(1), deliver)  # asked again when it comes back into view: it loads
        qtbot.waitUntil(lambda: arrived[-1:] == [1], timeout=30_000)
    finally:
        free.set()
        loader.shutdown()
