"""Scene items of the canvas: a layer drawn from a QImage (only its exposed part), the brush cursor, the
handles of a pose layer's joints."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget


class LayerItem(QGraphicsItem):
    """Draws a QImage at scene (0, 0), one scene unit per pixel, repainting only the exposed rect.

    Smooth when zoomed out (no shimmering), crisp pixels when zoomed in, as paint programs do.
    """

    def __init__(self, smooth_when_reduced: bool = True):
        super().__init__()
        self._image = QImage()
        self._smooth = smooth_when_reduced
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    @property
    def image(self) -> QImage:
        return self._image

    def set_image(self, image: QImage) -> None:
        if image.size() != self._image.size():
            self.prepareGeometryChange()
        self._image = image
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        return QRectF(0, 0, self._image.width(), self._image.height())

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if self._image.isNull():
            return
        exposed = option.exposedRect.toAlignedRect().intersected(QRect(0, 0, self._image.width(), self._image.height()))
        if exposed.isEmpty():
            return
        reduced = painter.worldTransform().m11() < 1.0
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._smooth and reduced)
        if self._image.format() == QImage.Format.Format_Indexed8:
            # The raster engine would convert the whole indexed image to ARGB for every paint: take
            # only the exposed part, and when zoomed out only as many pixels as reach the screen.
            part = self._image if exposed == self._image.rect() else self._image.copy(exposed)
            scale = painter.worldTransform().m11()
            if reduced:
                size = exposed.size() * scale
                part = part.scaled(max(1, round(size.width())), max(1, round(size.height())),
                                   Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation)
            painter.drawImage(QRectF(exposed), part)
        else:
            painter.drawImage(exposed, self._image, exposed)


class BrushCursorItem(QGraphicsItem):
    """The brush outline at its true size at any zoom, in black and white so it shows on any image;
    a small crosshair marks the centre (and stands in for the outline when that is under 4 px)."""

    def __init__(self):
        super().__init__()
        self.diameter = 10.0
        self.zoom = 1.0
        self.setZValue(100)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_state(self, diameter: float, zoom: float) -> None:
        if diameter != self.diameter or zoom != self.zoom:
            self.prepareGeometryChange()
            self.diameter, self.zoom = diameter, zoom

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        r = self.diameter / 2 + 8 / max(self.zoom, 1e-3)
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        r = self.diameter / 2
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        dark = QPen(QColor(0, 0, 0, 200), 3)
        dark.setCosmetic(True)
        light = QPen(QColor(255, 255, 255, 230), 1.2)
        light.setCosmetic(True)
        tick = 4 / max(self.zoom, 1e-3)
        for pen in (dark, light):
            painter.setPen(pen)
            if r * self.zoom >= 4:
                painter.drawEllipse(QPointF(0, 0), r, r)
            painter.drawLine(QPointF(-tick, 0), QPointF(tick, 0))
            painter.drawLine(QPointF(0, -tick), QPointF(0, tick))


class PoseHandlesItem(QGraphicsItem):
    """The joints of the active pose layer's figures as handles to drag: a ring in the joint's OpenPose
    colour, the same size on screen at any zoom. Drawn over the layer, never part of its pixels."""

    RADIUS = 6.0  # screen pixels

    def __init__(self):
        super().__init__()
        self.people: list = []
        self.zoom = 1.0
        self._rect = QRectF()
        self.setZValue(30)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_state(self, people: list, zoom: float) -> None:
        points = [p for person in people for p in person if p is not None]
        pad = (self.RADIUS + 3) / max(zoom, 1e-3)
        rect = QRectF()
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            rect = QRectF(min(xs) - pad, min(ys) - pad, max(xs) - min(xs) + 2 * pad, max(ys) - min(ys) + 2 * pad)
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.people, self.zoom = people, zoom
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        from engine.preprocess import POSE_COLOURS

        r = self.RADIUS / max(self.zoom, 1e-3)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        dark = QPen(QColor(0, 0, 0, 220), 3)
        dark.setCosmetic(True)
        for person in self.people:
            for point, colour in zip(person, POSE_COLOURS):
                if point is None:
                    continue
                centre = QPointF(point[0], point[1])
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.setPen(dark)
                painter.drawEllipse(centre, r, r)
                ring = QPen(QColor(*colour), 1.6)
                ring.setCosmetic(True)
                painter.setPen(ring)
                painter.drawEllipse(centre, r, r)
