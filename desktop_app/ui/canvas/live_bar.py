"""Live mode's toggle (on the canvas's generation bar), its row under the canvas, and the view that
shows its result beside the canvas. They bind to desktop_app.state.live.LiveMode."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from desktop_app.state.live import LiveMode
from desktop_app.ui.labels import ElidedLabel


class LiveBarWidget(QWidget):
    """The Live toggle (``live_button``, for the canvas's generation bar) and, while live mode is on, a
    row under the canvas: what it is doing, Over canvas, New seed and Apply."""

    def __init__(self, live: LiveMode, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("LiveBarWidget")
        self._live = live
        self.live_button = QToolButton(text="Live")
        self.live_button.setObjectName("LiveButton")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Live mode: the canvas re-renders after every stroke, layer or prompt change "
                                    "(image to image at the strength, or inpaint of the mask). Best with a fast "
                                    "model: SD-Turbo, SDXL-Turbo, FLUX.1 schnell, Z-Image Turbo")
        self.label = ElidedLabel()
        self.label.setObjectName("LiveMessage")
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.over_button = QPushButton("Over canvas")
        self.over_button.setCheckable(True)
        self.over_button.setToolTip("Show the live result over the canvas instead of beside it")
        self.seed_button = QPushButton("New seed")
        self.seed_button.setToolTip("Live mode keeps one seed so strokes change the picture, not the noise: "
                                    "draw another (with a random seed in the prompt panel)")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setObjectName("LiveApplyButton")
        self.apply_button.setToolTip("Copy the live result into a new layer (Ctrl+Z undoes it); it is saved to "
                                     "the gallery")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 2, 8, 2)
        row.addWidget(QLabel("Live:"))
        row.addWidget(self.label, 1)
        for w in (self.over_button, self.seed_button, self.apply_button):
            row.addWidget(w)
        self.live_button.toggled.connect(live.set_enabled)
        self.over_button.toggled.connect(live.set_overlay)
        self.seed_button.clicked.connect(live.new_seed)
        self.apply_button.clicked.connect(live.apply)
        live.message_changed.connect(lambda text: self.label.setText(text.removeprefix("Live: ")))
        live.progressed.connect(lambda step, total: self.label.setText(f"rendering, step {step} of {total}…"))
        live.running_changed.connect(lambda running: None if running else
                                     self.label.setText(live.message.removeprefix("Live: ")))
        for signal in (live.enabled_changed, live.overlay_changed, live.frame_changed):
            signal.connect(lambda *_a: self.refresh())
        live.params.seed_mode_changed.connect(lambda _m: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        live = self._live
        for button, checked in ((self.live_button, live.enabled), (self.over_button, live.overlay)):
            button.blockSignals(True)
            button.setChecked(checked)
            button.blockSignals(False)
        self.setVisible(live.enabled)
        self.seed_button.setEnabled(live.params.seed_mode != "fixed")
        self.seed_button.setToolTip("The prompt panel's fixed seed is used: choose Random there to draw others"
                                    if live.params.seed_mode == "fixed" else
                                    "Live mode keeps one seed so strokes change the picture, not the noise: draw another")
        self.apply_button.setEnabled(live.frame is not None)


class LiveResultView(QWidget):
    """The live result beside the canvas, fitted to the space, with what live mode is doing under it."""

    def __init__(self, live: LiveMode, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("LiveResultView")
        self._live = live
        self._pixmap: QPixmap | None = None
        self.picture = _Picture(self)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.picture, 1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        live.frame_changed.connect(self._on_live_frame_changed)
        for signal in (live.enabled_changed, live.overlay_changed):
            signal.connect(lambda *_a: self._refresh_visible())
        self._on_live_frame_changed()
        self._refresh_visible()

    @property
    def pixmap(self) -> QPixmap | None:
        return self._pixmap

    def _on_live_frame_changed(self) -> None:
        frame = self._live.frame
        self._pixmap = QPixmap.fromImage(frame.image) if frame is not None else None
        self.picture.update()

    def _refresh_visible(self) -> None:
        self.setVisible(self._live.enabled and not self._live.overlay)


class _Picture(QWidget):
    def __init__(self, owner: LiveResultView):
        super().__init__(owner)
        self._owner = owner
        self.setMinimumSize(120, 120)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(320, 320)

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window().color().darker(110))
        pixmap = self._owner.pixmap
        if pixmap is None:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             "The live result\nshows here")
            return
        size = pixmap.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(self.rect().center())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, pixmap)
