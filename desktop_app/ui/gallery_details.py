"""The details pane beside the gallery grid: everything the selected image's file says about it."""

from __future__ import annotations

import time

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from desktop_app.state.gallery import GalleryState, OpenedImage
from desktop_app.state.gallery_model import UnsavedImage
from engine.library import LibraryEntry

_TOOLS = {"easel": "Easel", "a1111": "A1111 / Forge", "comfyui": "ComfyUI", "invokeai": "InvokeAI",
          "fooocus": "Fooocus", "nmkd": "NMKD", "none": "none"}


class GalleryDetailsPanel(QWidget):
    restore_requested = Signal(object)  # the item
    edit_requested = Signal(object, str)  # item, edit mode ("" keeps the canvas's choice)
    favourite_requested = Signal(object)
    save_as_requested = Signal(object)
    import_requested = Signal(object)

    def __init__(self, gallery: GalleryState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("GalleryDetailsPanel")
        self._gallery = gallery
        self.item: LibraryEntry | UnsavedImage | OpenedImage | None = None
        self.title = QLabel("No image selected")
        self.title.setObjectName("DetailsTitle")
        self.title.setWordWrap(True)
        self.text = QTextBrowser()
        self.text.setMinimumWidth(160)
        self.text.setOpenLinks(False)
        self.text.setToolTip("The generation settings stored in the image file")
        self.restore_button = QPushButton("Restore settings")
        self.restore_button.setToolTip("Put this image's prompt, seed, size, sampler and model into the prompt panel")
        self.edit_button = QPushButton("Edit in canvas")
        self.edit_button.setToolTip("Open this image on the canvas, to paint a mask and change part of it (Ctrl+E)")
        self.source_button = QPushButton("Use as img2img")
        self.source_button.setToolTip("Open this image on the canvas; Generate then redoes the whole image (image to image)")
        self.favourite_button = QPushButton("☆ Favourite")
        self.favourite_button.setToolTip("Star or unstar (kept in the file, so it survives a rebuild) (F)")
        self.save_as_button = QPushButton("Save as…")
        self.save_as_button.setToolTip("This image could not be saved: choose another place for it")
        self.import_button = QPushButton("Add to gallery")
        self.import_button.setToolTip("Copy this image into the gallery library")

        buttons = QGridLayout()
        # Two by two; the buttons sharing a cell are never shown together (they depend on the kind of item).
        for b, row, col in ((self.restore_button, 0, 0), (self.save_as_button, 0, 0), (self.edit_button, 0, 1),
                            (self.source_button, 1, 0), (self.favourite_button, 1, 1), (self.import_button, 1, 1)):
            buttons.addWidget(b, row, col)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)

        self.restore_button.clicked.connect(lambda: self.restore_requested.emit(self.item))
        self.edit_button.clicked.connect(lambda: self.edit_requested.emit(self.item, ""))
        self.source_button.clicked.connect(lambda: self.edit_requested.emit(self.item, "img2img"))
        self.favourite_button.clicked.connect(lambda: self.favourite_requested.emit(self.item))
        self.save_as_button.clicked.connect(lambda: self.save_as_requested.emit(self.item))
        self.import_button.clicked.connect(lambda: self.import_requested.emit(self.item))
        gallery.current_changed.connect(self._on_gallery_current_changed)
        gallery.details_loaded.connect(self._on_gallery_details_loaded)
        self._on_gallery_current_changed(None)

    def _on_gallery_current_changed(self, item) -> None:
        self.item = item
        library = isinstance(item, LibraryEntry)
        opened = isinstance(item, OpenedImage)
        unsaved = isinstance(item, UnsavedImage)
        self.restore_button.setVisible(library or opened)
        self.edit_button.setVisible(item is not None)
        self.source_button.setVisible(library or opened)
        self.favourite_button.setVisible(library)
        self.save_as_button.setVisible(unsaved)
        self.import_button.setVisible(opened)
        if item is None:
            self.title.setText("No image selected")
            self.text.setHtml("<p style='color:gray'>Select an image to see how it was made.</p>")
            return
        if unsaved:
            self.title.setText("Not saved")
            self.text.setHtml(_html([("Why", item.error), ("Prompt", item.prompt), ("Seed", str(item.seed))]))
            return
        if library:
            self.title.setText(("★ " if item.favourite else "") + item.name)
            self.favourite_button.setText("★ Unfavourite" if item.favourite else "☆ Favourite")
            self.restore_button.setEnabled(item.source != "none")
            self.text.setHtml(_html(_entry_rows(item)))
        else:
            self.title.setText(f"{item.path.name} (not in the gallery)")
            self.restore_button.setEnabled(item.meta.found)
        self._gallery.request_details(item)

    def _on_gallery_details_loaded(self, item, meta) -> None:
        if item is not self.item:
            return
        rows = _entry_rows(item) if isinstance(item, LibraryEntry) else []
        if meta.upscale:  # an upscale is not the img2img its recipe ran as (nor its source's mode)
            rows = [(k, v) for k, v in rows if k != "Mode"] + [("Mode", "upscale"), ("Upscale", meta.upscale)]
        if not meta.found:
            rows.append(("Settings", "none stored in this image"))
        else:
            f = meta.fields
            if not rows:
                rows = [("Prompt", f.get("prompt", "")), ("Negative", f.get("negative_prompt", "")),
                        ("Seed", str(f.get("seed", ""))), ("Size", f"{f.get('width', '?')}×{f.get('height', '?')}"),
                        ("Steps", str(f.get("steps", ""))), ("CFG scale", str(f.get("guidance_scale", ""))),
                        ("Sampler", f.get("sampler", "")), ("Model", meta.model_name), ("Made with", _TOOLS.get(meta.source, meta.source))]
            if meta.model_hash:
                rows.append(("Model hash", meta.model_hash))
            rows += [(k, v) for k, v in meta.extra.items()]
            rows += [(k, v) for k, v in _detail_rows(f) if k not in meta.extra]
        rows += [("Warning", w) for w in meta.warnings]
        self.text.setHtml(_html(rows))


def _detail_rows(f: dict) -> list[tuple[str, str]]:
    """The hires fix's or the detail upscale's settings (A1111's words), when the image was made with one."""
    if f.get("hires_scale"):
        return [("Hires upscale", f"{f['hires_scale']:g}"), ("Hires steps", str(f.get("hires_steps") or "as Steps")),
                ("Hires upscaler", f.get("upscaler", "")), ("Denoising strength", f"{f.get('hires_strength', 0.5):g}")]
    if f.get("tile") and f.get("mode") == "img2img":
        return [("Detail upscaler", f.get("upscaler", "")), ("Detail tile", f"{f['tile']} px"),
                ("Detail tile overlap", f"{f.get('tile_overlap', 0)} px")]
    return []


def _entry_rows(e: LibraryEntry) -> list[tuple[str, str]]:
    rows = [("Prompt", e.prompt), ("Negative", e.negative_prompt)]
    if e.seed is not None:
        rows.append(("Seed", str(e.seed)))
    rows.append(("Size", f"{e.width}×{e.height}"))
    if e.steps is not None:
        rows.append(("Steps", str(e.steps)))
    if e.guidance_scale is not None:
        rows.append(("CFG scale", f"{e.guidance_scale:g}"))
    if e.sampler:
        rows.append(("Sampler", e.sampler))
    if e.mode and e.mode != "txt2img":
        rows.append(("Mode", e.mode))
    if e.model_name:
        rows.append(("Model", e.model_name))
    rows.append(("Made with", _TOOLS.get(e.source, e.source)))
    rows.append(("Date", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created))))
    rows.append(("File", e.path))
    return [(k, v) for k, v in rows if v]


def _html(rows: list[tuple[str, str]]) -> str:
    import html  # first needed when an image is selected (html.entities is not on the start-up path)

    seen: set[str] = set()
    cells = []
    for key, value in rows:
        if (key, value) in seen:
            continue
        seen.add((key, value))
        text = html.escape(str(value)).replace("\n", "<br>")
        cells.append(f"<tr><td style='color:gray; padding-right:8px; vertical-align:top'>{html.escape(key)}</td>"
                     f"<td>{text}</td></tr>")
    return f"<table cellspacing='2'>{''.join(cells)}</table>"
