"""The grid with thousands of images: painting and scrolling through them all does not crash
(PySide6's QModelIndex.data() drops a reference to None each time it yields None; the delegate
must not use it) and the thumbnail cache stays within its limit."""

from __future__ import annotations

from PIL import Image

from PySide6.QtWidgets import QApplication

from engine.library import Library


def test_scrolling_through_thousands_of_images_keeps_memory_bounded(make_studio, data_dir, fake_engine, qtbot):
    out = data_dir / "outputs"
    out.mkdir()
    for i in range(2500):
        Image.new("RGB", (8, 8), (i % 256, i // 256, 7)).save(out / f"img-{i:05d}.png")
    with Library(out) as lib:
        lib.reconcile()
    studio = make_studio(data_dir, fake_engine)
    model = studio.gallery.model
    assert model.rowCount() == 2500
    model.thumb_cache_bytes = 2 * 2**20  # small, so the scroll must evict
    view = studio.window.gallery_panel.view
    bar = view.verticalScrollBar()
    while bar.value() < bar.maximum():
        bar.setValue(bar.value() + view.viewport().height())
        view.viewport().repaint()  # paints every visible cell: thousands of data() calls in all
        QApplication.processEvents()
    last = model.rowCount() - 1
    qtbot.waitUntil(lambda: (model.entry_at(last).id, model.entry_at(last).mtime_ns) in model._thumbs, timeout=30_000)
    assert model.thumbnail_bytes <= model.thumb_cache_bytes
    assert len(model._entries) <= 4096
