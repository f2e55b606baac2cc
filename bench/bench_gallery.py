"""The gallery with a big library: first paint, search, scrolling stalls, memory vs library size.

Makes libraries of small PNGs (64x64, each with A1111 + Easel-style metadata and a different prompt),
indexes them, then for each size opens the real main window (offscreen, engine stubbed: no model
is needed to browse) in a fresh process and measures:
  - open -> first paint of the grid (goal <= 300 ms), and -> first screen of thumbnails (cold cache);
  - search: typing a query -> grid updated (goal <= 50 ms), for several kinds of query;
  - scrolling the whole grid, three rows per frame at 60 fps, with a 5 ms GUI heartbeat: the
    longest gap is the worst stall (goal <= 50 ms), while thumbnails are made on their thread;
  - resident memory after the scroll (goal: not growing with library size beyond the thumbnail cache).

    python bench/bench_gallery.py [--sizes 1000 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("castle hill lighthouse dusk portrait knight forest river city night neon rain desert ship storm dragon "
         "garden winter market robot cat owl mountain lake temple sunset fog harbour train bridge").split()


def make_library(data: Path, count: int) -> float:
    """Write ``count`` PNGs with metadata and index them; returns the indexing rate (images/s)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from engine.library import Library

    out = data / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(count)
    base = time.time() - count * 60
    for i in range(count):
        prompt = " ".join(rng.choice(WORDS) for _ in range(6)) + f", variation {i}"
        info = PngInfo()
        info.add_text("parameters", f"{prompt}\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                                    f"Seed: {1000 + i}, Size: 64x64, Model hash: 6ce0161689, Model: bench-model")
        path = out / f"bench-{i:06d}.png"
        Image.new("RGB", (64, 64), (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(path, pnginfo=info)
        os.utime(path, (base + i * 60, base + i * 60))
    t0 = time.perf_counter()
    with Library(out) as lib:
        lib.rebuild()
    return count / (time.perf_counter() - t0)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(data: Path) -> dict:
    """In a fresh process: open the window on ``data`` and measure (prints JSON)."""
    import asyncio

    import qasync
    from PySide6.QtCore import QEvent, QObject, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    loop = qasync.QEventLoop(app, already_running=True)
    asyncio.set_event_loop(loop)
    from desktop_app.app import Studio

    class PaintWatch(QObject):
        painted_at: float | None = None

        def eventFilter(self, obj, event):  # noqa: N802
            if event.type() == QEvent.Type.Paint and self.painted_at is None:
                self.painted_at = -1.0  # set after the paint returns
            return False

    from desktop_app.state import gallery as gallery_module

    gallery_ms: list[float] = []
    original_init = gallery_module.GalleryState.__init__

    def timed_init(self, *a, **k):
        t = time.perf_counter()
        original_init(self, *a, **k)
        gallery_ms.append((time.perf_counter() - t) * 1000)

    gallery_module.GalleryState.__init__ = timed_init
    rss_before = rss_mb()
    t0 = time.perf_counter()
    studio = Studio(data, engine_factory=lambda: object(), app=app)
    window_built = (time.perf_counter() - t0) * 1000
    watch = PaintWatch()
    view = studio.window.gallery_panel.view
    view.viewport().installEventFilter(watch)
    studio.window.resize(1280, 820)
    studio.window.show()
    t_start = time.perf_counter()
    studio.start()  # the gallery's first query happens here
    gallery_start = (time.perf_counter() - t_start) * 1000
    while watch.painted_at is None:
        app.processEvents()
    first_paint = (time.perf_counter() - t0) * 1000
    model = studio.gallery.model
    rows = model.rowCount()

    def wait(cond, limit=120.0):
        end = time.perf_counter() + limit
        while not cond() and time.perf_counter() < end:
            app.processEvents()

    def visible_rows():
        from PySide6.QtCore import QPoint

        rect = view.viewport().rect()
        first = max(0, view.indexAt(QPoint(5, 5)).row())
        return [r for r in range(first, min(rows, first + 400)) if view.visualRect(model.index(r)).intersects(rect)]

    def thumbs_loaded():
        return all(model._thumbs.get((model.entry_at(r).id, model.entry_at(r).mtime_ns)) is not None for r in visible_rows())

    wait(thumbs_loaded)
    first_thumbs = (time.perf_counter() - t0) * 1000
    wait(lambda: not studio.gallery._tasks)  # start-up reconcile done
    rss_open = rss_mb()

    # Search: time from the query to the grid showing the result.
    searches = {}
    for query in ("castle", "castle dusk", '"neon rain"', "dragon -winter", "1234", "zzzz-nothing", ""):
        done = []
        studio.gallery.searched.connect(done.append)
        t = time.perf_counter()
        studio.window.gallery_panel.search_edit.setText(query)
        wait(lambda: bool(done))
        app.processEvents()  # the repaint
        searches[query or "(cleared)"] = ((time.perf_counter() - t) * 1000, done[0])
        studio.gallery.searched.disconnect(done.append)

    # Scroll the whole grid: 3 rows per 16 ms frame; a 5 ms heartbeat records the GUI's gaps.
    bar = view.verticalScrollBar()
    ticks = [time.perf_counter()]
    beat = QTimer()
    beat.setTimerType(Qt.TimerType.PreciseTimer)
    beat.setInterval(5)
    beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    step = 3 * 124
    scroller = QTimer()
    scroller.setInterval(16)
    scroller.timeout.connect(lambda: bar.setValue(bar.value() + step))
    t = time.perf_counter()
    beat.start()
    scroller.start()
    wait(lambda: bar.value() >= bar.maximum(), limit=600)
    scroller.stop()
    wait(thumbs_loaded)
    beat.stop()
    ticks.append(time.perf_counter())
    scroll_seconds = time.perf_counter() - t
    gaps = sorted((b - a) * 1000 for a, b in zip(ticks, ticks[1:]))
    result = {
        "rows": rows, "first_paint_ms": first_paint, "window_built_ms": window_built,
        "gallery_open_ms": gallery_ms[0] + gallery_start, "first_thumbnails_ms": first_thumbs,
        "searches": searches, "scroll_seconds": scroll_seconds, "scroll_max_gap_ms": gaps[-1],
        "scroll_p99_gap_ms": gaps[int(0.99 * (len(gaps) - 1))], "thumbnails_loaded": studio.bridge.thumbnails.loaded_count,
        "thumb_cache_mb": model.thumbnail_bytes / 2**20, "thumb_cache_limit_mb": model.thumb_cache_bytes / 2**20,
        "rss_start_mb": rss_before, "rss_after_open_mb": rss_open, "rss_after_scroll_mb": rss_mb(),
    }
    studio.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--keep", type=Path, help="build the libraries here (reused if present)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="easel-bench-gallery-"))
    results = {}
    for size in args.sizes:
        data = root / f"lib-{size}"
        if not (data / "outputs" / ".easel" / "index.sqlite").exists():
            rate = make_library(data, size)
            print(f"library of {size:,} PNGs made and indexed from the files at {rate:,.0f} images/s")
        import shutil

        shutil.rmtree(data / "outputs" / ".easel" / "thumbs", ignore_errors=True)  # measure a cold cache
        screen = ROOT / "tests" / "desktop_app" / "offscreen-screen.json"  # 1600x1000, like the UI tests
        proc = subprocess.run([sys.executable, __file__, "--measure", str(data)], capture_output=True, text=True,
                              env={**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={screen}"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            raise SystemExit(f"measuring {size} failed")
        results[size] = r = json.loads(line[7:])
        print(f"\n== {r['rows']:,} images ==")
        print(f"open -> first paint of the grid      {r['first_paint_ms']:7.0f} ms   (goal <= 300 ms; whole window)")
        print(f"  of which: building the whole main window {r['window_built_ms']:.0f} ms, the gallery's part "
              f"(open library + index, first query) {r['gallery_open_ms']:.0f} ms")
        print(f"open -> first screen of thumbnails   {r['first_thumbnails_ms']:7.0f} ms   (cold thumbnail cache)")
        for query, (ms, n) in r["searches"].items():
            print(f"search {query!r:<22} -> {n:6,} shown {ms:7.1f} ms   (goal <= 50 ms)")
        print(f"scroll whole grid in {r['scroll_seconds']:.1f} s: max GUI gap {r['scroll_max_gap_ms']:.1f} ms, "
              f"p99 {r['scroll_p99_gap_ms']:.1f} ms (goal: no stall over 50 ms); {r['thumbnails_loaded']:,} thumbnails loaded")
        print(f"memory: {r['rss_start_mb']:.0f} MB before opening, {r['rss_after_open_mb']:.0f} MB open, "
              f"{r['rss_after_scroll_mb']:.0f} MB after the scroll; "
              f"thumbnail cache {r['thumb_cache_mb']:.0f} MB of {r['thumb_cache_limit_mb']:.0f} MB limit")
    if len(results) > 1:
        small, big = min(results), max(results)
        growth = results[big]["rss_after_scroll_mb"] - results[small]["rss_after_scroll_mb"]
        print(f"\nmemory growth from {small:,} to {big:,} images: {growth:+.0f} MB "
              f"(thumbnail cache limit {results[big]['thumb_cache_limit_mb']:.0f} MB)")
        rest = {n: results[n]["rss_after_scroll_mb"] - results[n]["thumb_cache_mb"] for n in (small, big)}
        print(f"  of which outside the thumbnail cache (after the scroll, less the cache's own size): "
              f"{rest[small]:.0f} MB -> {rest[big]:.0f} MB ({rest[big] - rest[small]:+.0f} MB); right after opening: "
              f"{results[small]['rss_after_open_mb']:.0f} MB -> {results[big]['rss_after_open_mb']:.0f} MB")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
