"""The gallery grid: a QListView over GalleryModel (one delegate paints every cell; no widget per image)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from desktop_app.state.gallery_model import GalleryModel

CELL = 124


class GalleryItemDelegate(QStyledItemDelegate):
    """Paints one cell. Reads the model through its Python ``data`` method, never ``QModelIndex.data()``:
    with PySide6 6.12 on Python 3.11 every ``QModelIndex.data()`` that yields None drops a reference
    to None, and a few thousand of them (a scroll through a big gallery) abort the interpreter."""

    def __init__(self, model: GalleryModel, parent: QWidget | None = None):
        super().__init__(parent)
        self._model = model

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return QSize(CELL, CELL)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        rect = option.rect.adjusted(3, 3, -3, -3)
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.fillRect(rect, palette.alternateBase())
        data = self._model.data
        pixmap = data(index, GalleryModel.ThumbnailRole)
        area = rect.adjusted(3, 3, -3, -3)
        if pixmap is not None and not pixmap.isNull():
            size = pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(area.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawPixmap(target, pixmap)
        else:
            painter.setPen(palette.placeholderText().color())
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "…")
        if data(index, GalleryModel.FavouriteRole):
            star = QRect(rect.right() - 22, rect.top() + 2, 20, 20)
            painter.setPen(QColor(255, 205, 60))
            font = painter.font()
            font.setPixelSize(17)
            painter.setFont(font)
            painter.drawText(star, Qt.AlignmentFlag.AlignCenter, "★")
        if data(index, GalleryModel.UnsavedRole):
            badge = QRect(rect.left(), rect.bottom() - 18, rect.width(), 18)
            painter.fillRect(badge, QColor(150, 40, 45, 220))
            painter.setPen(QColor(255, 240, 240))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "not saved")
        if selected:
            painter.setPen(QPen(palette.highlight().color(), 3))
            painter.drawRect(rect.adjusted(1, 1, -1, -1))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.setPen(QPen(palette.mid().color(), 1))
            painter.drawRect(rect)
        painter.restore()


class GalleryView(QListView):
    """Icon grid, uniform cells, multi-select; drags out as file URLs (to other apps)."""

    def __init__(self, model: GalleryModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("GalleryView")
        self.setModel(model)
        self.setItemDelegate(GalleryItemDelegate(model, self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setUniformItemSizes(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        # Lay out a few hundred cells per event-loop turn: a new search result of 10,000 images paints its
        # first screen at once instead of after one pass over every row (two Python model calls per row).
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(300)
        self.setGridSize(QSize(CELL, CELL))
        self.setSpacing(0)
        self.setWrapping(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(CELL // 3)
        self.setMouseTracking(True)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setToolTip("Your images, newest first. Double-click restores an image's settings; right-click for more.")
        self.setAccessibleName("Gallery")
