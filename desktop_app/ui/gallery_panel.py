"""The gallery panel: search and filters above the grid, the details pane beside it, a context menu."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QImage, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.actions import StudioActions
from desktop_app.state.gallery import OpenedImage
from desktop_app.state.gallery_model import GalleryModel, UnsavedImage
from desktop_app.ui.gallery_details import GalleryDetailsPanel
from desktop_app.ui.gallery_view import GalleryView
from engine.library import LibraryEntry

_DATES = (("Any time", None), ("Today", 0), ("Last 7 days", 7), ("Last 30 days", 30), ("Last year", 365))


class GalleryPanel(QWidget):
    variations_requested = Signal(object)  # the gallery item
    upscale_requested = Signal(object)

    def __init__(self, actions: StudioActions, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("GalleryPanel")
        self._actions = actions
        self._gallery = g = actions.gallery

        self.search_edit = QLineEdit()
        self.search_edit.setObjectName("GallerySearch")
        self.search_edit.setPlaceholderText("Search prompts…  (words, \"a phrase\", -exclude, a seed)")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setToolTip("Find images by words in their prompt or negative prompt, or by seed (Ctrl+F)")
        self.favourites_button = _tool("★", "Show only favourites", checkable=True)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Show only images made with this model")
        self.model_combo.addItem("All models", "")
        self.size_combo = QComboBox()
        self.size_combo.setToolTip("Show only images of this size")
        self.size_combo.addItem("All sizes", None)
        self.date_combo = QComboBox()
        self.date_combo.setToolTip("Show only images made recently")
        for label, days in _DATES:
            self.date_combo.addItem(label, days)
        self.trash_button = _tool("Trash", "Show the trash (deleted images, until it is emptied)", checkable=True)
        self.undo_button = _tool("Undo", "Bring back the images just moved to the trash (Ctrl+Z)")
        self.undo_button.setEnabled(False)
        self.count_label = QLabel()
        self.count_label.setObjectName("GalleryCount")
        self.search_edit.setMinimumWidth(120)
        for combo in (self.model_combo, self.size_combo, self.date_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(5)

        self.view = GalleryView(g.model)
        self.details = GalleryDetailsPanel(g)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("gallery_splitter")
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setSizes([560, 300])
        self.splitter.setChildrenCollapsible(False)
        self.view.setMinimumWidth(140)
        self.details.setMaximumWidth(380)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.search_edit, 1)
        for w in (self.favourites_button, self.trash_button, self.undo_button):
            bar.addWidget(w)
        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        for w in (self.model_combo, self.size_combo, self.date_combo):
            filters.addWidget(w, 1)
        filters.addStretch(0)
        filters.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(bar)
        layout.addLayout(filters)
        layout.addWidget(self.splitter, 1)
        self._build_shortcuts()
        self._bind()
        self._on_model_count_changed(g.model.rowCount())

    def _build_shortcuts(self) -> None:
        self.shortcuts: list[tuple[str, str]] = []  # (keys, what) for Help › Keyboard shortcuts

        def add(keys: str, slot, where: QWidget, tip: str) -> QAction:
            action = QAction(self)
            action.setToolTip(tip)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(lambda _c=False: slot())
            where.addAction(action)
            self.shortcuts.append((action.shortcut().toString(QKeySequence.SequenceFormat.NativeText), f"Gallery: {tip}"))
            return action

        self.delete_action = add("Del", self.trash_selected, self.view, "Move the selected images to the trash")
        self.undo_action = add("Ctrl+Z", self._gallery.undo_trash, self, "Bring back the images just moved to the trash")
        self.favourite_action = add("F", self.toggle_favourite_selected, self.view, "Favourite or unfavourite the selected images")
        add("Ctrl+F", lambda: (self.search_edit.setFocus(), self.search_edit.selectAll()), self, "Search the prompts")
        add("Ctrl+C", self.copy_image, self.view, "Copy the image shown")

    def _bind(self) -> None:
        g = self._gallery
        self.search_edit.textChanged.connect(lambda text: g.set_filter(text=text))
        self.favourites_button.toggled.connect(lambda on: g.set_filter(favourites=on))
        self.model_combo.currentIndexChanged.connect(lambda _i: g.set_filter(model=self.model_combo.currentData() or ""))
        self.size_combo.currentIndexChanged.connect(lambda _i: g.set_filter(size=self.size_combo.currentData()))
        self.date_combo.currentIndexChanged.connect(self._on_date_combo_changed)
        self.trash_button.toggled.connect(lambda on: g.set_filter(trash=on))
        self.undo_button.clicked.connect(g.undo_trash)
        g.undo_changed.connect(self.undo_button.setEnabled)
        g.facets_changed.connect(self._on_gallery_facets_changed)
        g.model.count_changed.connect(self._on_model_count_changed)
        g.current_changed.connect(self._on_gallery_current_changed)
        g.model.modelReset.connect(lambda: self._on_gallery_current_changed(g.current))
        self.view.selectionModel().currentChanged.connect(self._on_view_current_changed)
        self.view.doubleClicked.connect(lambda index: self.restore(self._item(index)))
        self.view.customContextMenuRequested.connect(self._on_view_context_menu)
        d = self.details
        d.restore_requested.connect(self.restore)
        d.edit_requested.connect(self.edit_in_canvas)
        d.favourite_requested.connect(lambda item: self.toggle_favourite([item]))
        d.save_as_requested.connect(self.save_unsaved_as)
        d.import_requested.connect(lambda item: g.import_files([item.path]))

    # -- state -> widgets ---------------------------------------------------------------------

    def _on_model_count_changed(self, _count: int) -> None:
        n = self._gallery.model.rowCount()
        self.count_label.setText(f"{n:,} image{'s' if n != 1 else ''}")

    def _on_gallery_facets_changed(self, models: list[str], sizes: list[tuple[int, int]]) -> None:
        _refill(self.model_combo, "All models", "", [(m, m) for m in models])
        _refill(self.size_combo, "All sizes", None, [(f"{w} × {h}", (w, h)) for w, h in sizes])

    def _on_gallery_current_changed(self, item) -> None:
        row = -1
        if isinstance(item, LibraryEntry):
            row = self._gallery.model.row_of(item.id)
        elif isinstance(item, UnsavedImage) and item in self._gallery.model.unsaved:
            row = self._gallery.model.unsaved.index(item)
        index = self._gallery.model.index(row) if row >= 0 else QModelIndex()
        # Also when Qt already moved its current row there (rows removed) but left nothing selected.
        if row >= 0 and (self.view.currentIndex().row() != row or not self.view.selectionModel().isSelected(index)):
            self.view.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.view.scrollTo(index)

    def _on_view_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self._gallery.set_current(self._item(current))

    def _on_date_combo_changed(self, _index: int) -> None:
        days = self.date_combo.currentData()
        if days is None:
            since = None
        else:
            midnight = time.mktime(time.localtime()[:3] + (0, 0, 0, 0, 0, -1))
            since = midnight - days * 86400
        self._gallery.set_filter(since=since)

    # -- commands -----------------------------------------------------------------------------

    def _item(self, index: QModelIndex):
        # model.data, not index.data(): see GalleryItemDelegate (a PySide6 refcount bug with None).
        return self._gallery.model.data(index, GalleryModel.EntryRole) if index.isValid() else None

    def selected(self) -> list:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        items = [self._gallery.model.data(self._gallery.model.index(r), GalleryModel.EntryRole) for r in rows]
        return [i for i in items if i is not None]

    def selected_entries(self) -> list[LibraryEntry]:
        return [i for i in self.selected() if isinstance(i, LibraryEntry)]

    def _path(self, item) -> Path | None:
        if isinstance(item, LibraryEntry):
            return self._gallery.absolute(item)
        if isinstance(item, OpenedImage):
            return item.path
        return None

    def restore(self, item) -> None:
        path = self._path(item)
        if path is not None:
            self._actions.restore_settings(path)

    def edit_in_canvas(self, item, mode: str | None = None) -> None:
        """Open ``item`` on the canvas; ``mode`` "img2img" / "inpaint" also sets what Generate does."""
        self._actions.edit_in_canvas(item, mode or None)

    def trash_selected(self) -> None:
        entries = self.selected_entries()
        if entries and not self._gallery.filter.trash:
            self._gallery.trash(entries)

    def toggle_favourite(self, items: list) -> None:
        entries = [i for i in items if isinstance(i, LibraryEntry)]
        if entries:
            self._gallery.set_favourite(entries, not all(e.favourite for e in entries))

    def toggle_favourite_selected(self) -> None:
        self.toggle_favourite(self.selected())

    def copy_image(self) -> None:
        item = self._gallery.current
        if isinstance(item, UnsavedImage):
            QGuiApplication.clipboard().setImage(item.image)
        elif (path := self._path(item)) is not None:
            image = QImage(str(path))
            if not image.isNull():
                QGuiApplication.clipboard().setImage(image)

    def save_unsaved_as(self, item: UnsavedImage) -> None:
        name = f"easel-{item.seed}.png"
        target, _ = QFileDialog.getSaveFileName(self, "Save the image elsewhere", str(Path.home() / name), "PNG image (*.png)")
        if target:
            self._gallery.save_unsaved(item, Path(target))

    def export_selected(self) -> None:
        entries = self.selected_entries()
        if not entries:
            return
        folder = QFileDialog.getExistingDirectory(self, f"Export {len(entries)} image(s) to")
        if folder:
            self._gallery.export(entries, Path(folder))

    def _on_view_context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        if not self.view.selectionModel().isSelected(index):
            self.view.setCurrentIndex(index)
        self.build_menu(self._item(index)).popup(self.view.viewport().mapToGlobal(pos))

    def build_menu(self, item) -> QMenu:
        """The context menu for ``item`` (and the selection it belongs to)."""
        menu = QMenu(self)
        menu.setObjectName("GalleryMenu")
        if isinstance(item, UnsavedImage):
            menu.addAction("Save as…", lambda: self.save_unsaved_as(item))
            menu.addAction("Edit in canvas", lambda: self.edit_in_canvas(item))
            menu.addAction("Variations…", lambda: self.variations_requested.emit(item))
            menu.addAction("Upscale…", lambda: self.upscale_requested.emit(item))
            menu.addAction("Copy image", self.copy_image)
            menu.addAction("Copy prompt", lambda: QGuiApplication.clipboard().setText(item.prompt))
            return menu
        entries = self.selected_entries() or [item]
        in_trash = self._gallery.filter.trash
        restore = menu.addAction("Restore settings", lambda: self.restore(item))
        restore.setEnabled(item.source != "none")
        menu.addAction("Edit in canvas", lambda: self.edit_in_canvas(item))
        menu.addAction("Use as img2img source", lambda: self.edit_in_canvas(item, "img2img"))
        menu.addAction("Use as inpaint source", lambda: self.edit_in_canvas(item, "inpaint"))
        menu.addSeparator()
        single = len(entries) <= 1
        menu.addAction("Variations…", lambda: self.variations_requested.emit(item)).setEnabled(single and not in_trash)
        menu.addAction("Upscale…", lambda: self.upscale_requested.emit(item)).setEnabled(single and not in_trash)
        menu.addSeparator()
        menu.addAction("Copy prompt", lambda: QGuiApplication.clipboard().setText(item.prompt)).setEnabled(bool(item.prompt))
        menu.addAction("Copy seed", lambda: QGuiApplication.clipboard().setText(str(item.seed))).setEnabled(item.seed is not None)
        menu.addAction("Copy image", self.copy_image)
        menu.addSeparator()
        fav = all(e.favourite for e in entries)
        menu.addAction("Unfavourite" if fav else "Favourite", lambda: self.toggle_favourite(entries))
        menu.addAction("Open containing folder",
                       lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._gallery.absolute(item).parent))))
        menu.addAction(f"Export {len(entries)} image(s)…" if len(entries) > 1 else "Export…", self.export_selected)
        menu.addSeparator()
        if in_trash:
            menu.addAction("Put back from the trash", lambda: self._gallery.restore_from_trash(entries))
            menu.addAction("Empty the trash…", self._gallery.empty_trash)
        else:
            menu.addAction(f"Move {len(entries)} to the trash" if len(entries) > 1 else "Move to the trash",
                           lambda: self._gallery.trash(entries))
        return menu


def _tool(text: str, tip: str, *, checkable: bool = False) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setCheckable(checkable)
    return button


def _refill(combo: QComboBox, all_label: str, all_data, items: list[tuple[str, object]]) -> None:
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    combo.addItem(all_label, all_data)
    for label, data in items:
        combo.addItem(label, data)
    i = combo.findData(current)
    combo.setCurrentIndex(i if i >= 0 else 0)
    combo.blockSignals(False)
