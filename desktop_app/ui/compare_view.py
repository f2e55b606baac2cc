"""Before / after of an upscale: the two images over each other with a divider to drag, and the
choice to open the result in the canvas or keep it only in the gallery."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from desktop_app.state.image_jobs import UpscaleShown


class BeforeAfterView(QWidget):
    """The result fitted to the widget; left of the divider the source, enlarged smoothly to the same
    size (what a plain resize would give), right of it the upscaled image. Drag or click to move it."""

    def __init__(self, before: QImage, after: QImage, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("BeforeAfterView")
        self.before, self.after = before, after
        self.split = 0.5
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.SplitHCursor)
        self.setToolTip("Drag to compare: left of the line is before (the source enlarged plainly), right is after")

    def image_rect(self) -> QRectF:
        w, h = self.after.width(), self.after.height()
        area = QRectF(self.rect()).adjusted(4, 4, -4, -4)
        if not w or not h or area.width() <= 0 or area.height() <= 0:
            return QRectF()
        s = min(area.width() / w, area.height() / h)
        return QRectF(area.center().x() - w * s / 2, area.center().y() - h * s / 2, w * s, h * s)

    def set_split(self, fraction: float) -> None:
        self.split = max(0.0, min(1.0, fraction))
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        self._move_to(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_to(event.position())

    def _move_to(self, pos: QPointF) -> None:
        r = self.image_rect()
        if r.width() > 0:
            self.set_split((pos.x() - r.left()) / r.width())

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().window())
        r = self.image_rect()
        if r.isEmpty():
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        x = r.left() + r.width() * self.split
        p.save()
        p.setClipRect(QRectF(r.left(), r.top(), x - r.left(), r.height()))
        p.drawImage(r, self.before)
        p.restore()
        p.save()
        p.setClipRect(QRectF(x, r.top(), r.right() - x, r.height()))
        p.drawImage(r, self.after)
        p.restore()
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        self._tag(p, f"Before {self.before.width()}×{self.before.height()}", r.topLeft() + QPointF(8, 8), left=True)
        self._tag(p, f"After {self.after.width()}×{self.after.height()}", r.topRight() + QPointF(-8, 8), left=False)
        p.end()

    def _tag(self, p: QPainter, text: str, at: QPointF, *, left: bool) -> None:
        fm = p.fontMetrics()
        w, h = fm.horizontalAdvance(text) + 12, fm.height() + 6
        box = QRectF(at.x() if left else at.x() - w, at.y(), w, h)
        p.fillRect(box, QColor(0, 0, 0, 150))
        p.setPen(QColor(255, 255, 255))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class UpscaleResultDialog(QDialog):
    """Shown when an upscale is done: before/after, then "Open in canvas" or "Keep in gallery only"."""

    open_in_canvas_requested = Signal(object)  # UpscaleShown

    def __init__(self, shown: UpscaleShown, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("UpscaleResultDialog")
        self.setWindowTitle("Upscaled: before / after")
        self.shown = shown
        self.view = BeforeAfterView(shown.before, shown.after)
        self.caption = QLabel(f"{shown.caption}. Saved in the gallery as {shown.path.name}.")
        self.caption.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.open_button = self.buttons.addButton("Open in canvas", QDialogButtonBox.ButtonRole.AcceptRole)
        self.open_button.setToolTip("Make the upscaled image the canvas, to keep editing it (undoable)")
        self.keep_button = self.buttons.addButton("Keep in gallery only", QDialogButtonBox.ButtonRole.RejectRole)
        self.keep_button.setToolTip("Close; the upscaled image stays in the gallery")
        box = QVBoxLayout(self)
        box.addWidget(self.view, 1)
        box.addWidget(self.caption)
        box.addWidget(self.buttons)
        self.resize(760, 620)
        self.buttons.accepted.connect(self._on_open_clicked)
        self.buttons.rejected.connect(self.reject)

    def _on_open_clicked(self) -> None:
        self.open_in_canvas_requested.emit(self.shown)
        self.accept()
