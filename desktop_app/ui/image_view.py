"""The central image: the live preview while generating, the chosen result after."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget


class ImageView(QWidget):
    """Draws one image scaled to fit, keeping its aspect ratio, with an optional caption."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ImageView")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setToolTip("The live preview while generating, then the result. Click a result below to show it.")
        self._pixmap: QPixmap | None = None
        self._caption = ""
        self._placeholder = "No image yet. Write a prompt and press Ctrl+Enter."
        self._is_preview = False

    @property
    def pixmap(self) -> QPixmap | None:
        return self._pixmap

    @property
    def is_preview(self) -> bool:
        return self._is_preview

    def set_image(self, image: QImage | None, caption: str = "", *, preview: bool = False) -> None:
        self._pixmap = QPixmap.fromImage(image) if image is not None and not image.isNull() else None
        self._caption = caption
        self._is_preview = preview
        self.update()

    def set_caption(self, caption: str) -> None:
        if caption != self._caption:
            self._caption = caption
            self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self._pixmap is None:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect().adjusted(20, 20, -20, -20), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        area = self.rect().adjusted(8, 8, -8, -30 if self._caption else -8)
        size = self._pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = area.x() + (area.width() - size.width()) / 2
        y = area.y() + (area.height() - size.height()) / 2
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawPixmap(QRectF(x, y, size.width(), size.height()), self._pixmap, QRectF(self._pixmap.rect()))
        if self._caption:
            painter.setPen(QColor(200, 200, 205) if not self._is_preview else QColor(255, 211, 107))
            painter.drawText(self.rect().adjusted(8, 0, -8, -6), Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter, self._caption)
