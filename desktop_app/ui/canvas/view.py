"""The canvas view: the layers, the mask overlay, candidates and live previews on a QGraphicsView.

The layers are drawn as three items whatever their number: the layers below the active one
composited over white (kept as one image, redone only where a layer below changes), the active
layer itself (the one being painted on, drawn straight from its pixels at its opacity), and the
layers above it composited. A brush stroke so repaints three images and the mask, with one layer
or fifty.

Scene units are image pixels, so zoom and pan change only the view transform: the mask is always
painted at the image's full resolution. Left button paints with the current tool; space + drag or
the middle button pans; the wheel zooms around the cursor. A tablet's pressure scales the brush.
On a pose layer the joints of its figures have handles: pressing on one drags it (Ctrl+click hides it,
Shift+click puts a hidden one back where clicked).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QMouseEvent, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QFrame, QGraphicsItem, QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.canvas_layers import PREMUL, compose
from desktop_app.state.canvas_pose import is_pose_layer, pose_of
from desktop_app.ui.canvas.items import BrushCursorItem, LayerItem, PoseHandlesItem

MIN_ZOOM, MAX_ZOOM = 0.02, 32.0


class CanvasView(QGraphicsView):
    zoom_changed = Signal(float)
    files_dropped = Signal(list)  # local file paths
    image_dropped = Signal(QImage)

    def __init__(self, doc: CanvasDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("CanvasView")
        # The same plain QWidget viewport Qt makes, but made here: PySide wraps the one Qt makes on the
        # first viewport() call by resolving its type against every widget class (~25 ms at start-up).
        self.setViewport(QWidget())
        self.doc = doc
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        # No scroll bars (as in most paint programs): pan with space + drag or the middle button.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.setBackgroundBrush(QColor(38, 38, 42))
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheNone)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setAccessibleName("Canvas")

        self.image_item = LayerItem()  # the layers below the active one over white; or a candidate / viewed image
        self.active_item = LayerItem()
        self.active_item.setZValue(2)
        self.above_item = LayerItem()
        self.above_item.setZValue(4)
        # The layers below and above the active one do not change while it is painted: Qt keeps them
        # drawn at screen resolution (only the visible part), so a stroke or its undo redraws one
        # layer from its pixels and blits the other two.
        for item in (self.image_item, self.above_item):
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._below = QImage()
        self._above = QImage()
        self._below_keys: set[str] = set()
        self._above_keys: set[str] = set()
        self._below_layers: list = []
        self._above_layers: list = []
        self.mask_item = LayerItem(smooth_when_reduced=False)
        self.mask_item.setZValue(10)
        self.preview_item = QGraphicsPixmapItem()
        self.preview_item.setZValue(20)
        self.preview_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.preview_item.hide()
        # Live mode's result over the canvas (its "Over canvas" toggle), under a running job's preview.
        self.live_item = QGraphicsPixmapItem()
        self.live_item.setZValue(15)
        self.live_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.live_item.hide()
        self.outline_item = QGraphicsPathItem()
        pen = QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.outline_item.setPen(pen)
        self.outline_item.setBrush(QBrush(QColor(255, 255, 255, 40)))
        self.outline_item.setZValue(50)
        self.cursor_item = BrushCursorItem()
        self.cursor_item.hide()
        self.pose_item = PoseHandlesItem()  # the active pose layer's joints, to drag
        self.pose_item.hide()
        for item in (self.image_item, self.active_item, self.above_item, self.mask_item, self.live_item, self.preview_item,
                     self.outline_item, self.pose_item, self.cursor_item):
            self._scene.addItem(item)

        self.viewer_image: QImage | None = None  # a result shown instead of the document
        self._zoom = 1.0
        self._fit_mode = True
        self._space = False
        self._pan_from: QPointF | None = None
        self._shape: list[QPointF] = []  # rectangle corners or lasso points while dragging
        self._shape_erase = False
        self._pressure = 1.0
        self._tablet_down = False
        self.painting_enabled = True

        doc.document_replaced.connect(self._on_doc_document_replaced)
        doc.layer_pixels_changed.connect(self._on_doc_layer_pixels_changed)
        doc.layers_changed.connect(self._on_doc_layers_changed)
        doc.mask_changed.connect(self._on_doc_mask_changed)
        doc.candidates_changed.connect(self._on_doc_candidates_changed)
        doc.pose_changed.connect(self._on_doc_pose_changed)
        doc.brush.mask_visible_changed.connect(self._refresh_mask_layer)
        doc.brush.size_changed.connect(lambda _s: self._update_cursor())
        doc.brush.tool_changed.connect(lambda _t: self._update_cursor())
        self._on_doc_document_replaced()

    # -- what is shown ------------------------------------------------------------------------

    @property
    def showing_document(self) -> bool:
        return self.viewer_image is None and self.doc.has_image

    def show_viewer_image(self, image: QImage | None) -> None:
        """Show ``image`` (a preview or a result) instead of the document; None goes back to it."""
        old = self.viewer_image.size() if self.viewer_image is not None else None
        self.viewer_image = image if image is not None and not image.isNull() else None
        self._refresh_image_layer()
        self._refresh_mask_layer()
        self._refresh_pose_handles()
        new = self.viewer_image.size() if self.viewer_image is not None else None
        if old != new:
            self._reset_scene_rect()

    def show_preview(self, image: QImage | None, box: tuple[int, int, int, int] | None = None) -> None:
        """A live preview over the document's work region ``box`` (l, t, r, b); None hides it."""
        if image is None or image.isNull() or box is None:
            self.preview_item.hide()
            return
        l, t, r, b = box
        self.preview_item.setPixmap(QPixmap.fromImage(image))
        self.preview_item.setTransform(QTransform.fromScale((r - l) / image.width(), (b - t) / image.height()))
        self.preview_item.setPos(l, t)
        self.preview_item.show()

    def show_live(self, image: QImage | None) -> None:
        """Live mode's result over the whole canvas; None hides it."""
        if image is None or image.isNull() or not self.doc.has_image:
            self.live_item.hide()
            return
        self.live_item.setPixmap(QPixmap.fromImage(image))
        self.live_item.setTransform(QTransform.fromScale(self.doc.width / image.width(), self.doc.height / image.height()))
        self.live_item.show()

    def _refresh_image_layer(self) -> None:
        shown = self.viewer_image
        cand = self.doc.current_candidate()
        if shown is None and cand is not None and not self.doc.show_before:
            shown = cand.image
        self.image_item.set_image(shown if shown is not None else self._below)
        active = self.doc.active_layer
        self.active_item.setVisible(shown is None and active is not None and active.visible)
        self.above_item.setVisible(shown is None and bool(self._above_keys))

    def _rebuild_layers(self) -> None:
        """Split the stack at the active layer and composite the parts below and above it."""
        doc = self.doc
        at = doc.index_of(doc.active_key)
        below = doc.layers if at < 0 else doc.layers[:at]
        above = [] if at < 0 else doc.layers[at + 1:]
        self._below_layers, self._above_layers = below, above
        self._below_keys = {layer.key for layer in below if layer.visible}
        self._above_keys = {layer.key for layer in above if layer.visible}
        if doc.has_image:
            if self._below.size().toTuple() != (doc.width, doc.height):
                self._below = QImage(doc.width, doc.height, QImage.Format.Format_RGB32)
            compose(self._below, below, background=QColor(255, 255, 255))
            if self._above_keys:
                if self._above.size().toTuple() != (doc.width, doc.height):
                    self._above = QImage(doc.width, doc.height, PREMUL)
                compose(self._above, above)
            else:
                self._above = QImage()
        else:
            self._below, self._above = QImage(), QImage()
        active = doc.active_layer
        self.active_item.set_image(active.qimage if active is not None else QImage())
        self.active_item.setOpacity(active.opacity if active is not None else 1.0)
        self.above_item.set_image(self._above)
        self._refresh_image_layer()

    def _refresh_pose_handles(self) -> None:
        layer = self.doc.active_layer
        shown = is_pose_layer(layer) and layer.visible and self.viewer_image is None and not self.doc.candidates
        self.pose_item.set_state(pose_of(layer) if shown else [], self._zoom)
        self.pose_item.setVisible(shown)

    def _on_doc_pose_changed(self, key: str) -> None:
        if key == self.doc.active_key:
            self._refresh_pose_handles()

    def _on_doc_layers_changed(self) -> None:
        self._rebuild_layers()
        self._refresh_pose_handles()
        self._update_cursor()
        self.viewport().update()

    def _on_doc_layer_pixels_changed(self, key: str, rect) -> None:
        l, t, r, b = rect
        area = QRectF(l, t, r - l, b - t)
        if key == self.doc.active_key:
            self.active_item.update(area)
        elif key in self._below_keys:
            compose(self._below, self._below_layers, QRect(l, t, r - l, b - t), QColor(255, 255, 255))
            self.image_item.update(area)
        elif key in self._above_keys:
            compose(self._above, self._above_layers, QRect(l, t, r - l, b - t))
            self.above_item.update(area)

    def _refresh_mask_layer(self) -> None:
        # Hidden while results wait over the canvas: the overlay would tint the result being judged.
        visible = self.doc.brush.mask_visible and self.viewer_image is None and not self.doc.candidates
        self.mask_item.setVisible(visible)
        self.mask_item.set_image(self.doc.mask_qimage)

    def _on_doc_candidates_changed(self) -> None:
        self._refresh_image_layer()
        self._refresh_mask_layer()
        self._refresh_pose_handles()
        self._update_cursor()

    def _on_doc_document_replaced(self) -> None:
        self.preview_item.hide()
        self._rebuild_layers()
        self._refresh_mask_layer()
        self._refresh_pose_handles()
        self._reset_scene_rect()

    def _reset_scene_rect(self) -> None:
        rect = self.image_item.boundingRect()
        margin = max(rect.width(), rect.height(), 64) * 0.5
        self._scene.setSceneRect(rect.adjusted(-margin, -margin, margin, margin))
        if self._fit_mode or rect.isEmpty():
            self.fit()

    def _on_doc_mask_changed(self, rect) -> None:
        l, t, r, b = rect
        self.mask_item.update(QRectF(l, t, r - l, b - t))

    # -- zoom and pan -------------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        return self._zoom

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``zoom`` (1 = 100%) keeping the scene point under ``anchor`` (viewport pos) still."""
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        if anchor is None:
            anchor = QPointF(self.viewport().width() / 2, self.viewport().height() / 2)
        scene_pt = self.mapToScene(anchor.toPoint())
        self._fit_mode = False
        self._apply_zoom(zoom)
        delta = self.mapFromScene(scene_pt) - anchor.toPoint()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + delta.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + delta.y())

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_zoom(self._zoom * factor, anchor)

    def fit(self) -> None:
        """Fit the whole image in the view (it stays fitted when the window is resized)."""
        rect = self.image_item.boundingRect()
        self._fit_mode = True
        if rect.isEmpty():
            self._apply_zoom(1.0)
            return
        vp = self.viewport().size()
        zoom = min((vp.width() - 16) / rect.width(), (vp.height() - 16) / rect.height())
        self._apply_zoom(max(MIN_ZOOM, min(MAX_ZOOM, zoom)))
        self.centerOn(rect.center())

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def _apply_zoom(self, zoom: float) -> None:
        self._zoom = zoom
        self.setTransform(QTransform.fromScale(zoom, zoom))
        if self.pose_item.isVisible():
            self._refresh_pose_handles()
        self._update_cursor()
        self.zoom_changed.emit(zoom)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt name)
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25 ** steps, event.position())
        event.accept()

    # -- input --------------------------------------------------------------------------------

    def image_pos(self, pos: QPointF) -> QPointF:
        """A viewport position in image pixels (sub-pixel)."""
        inverted, _ok = self.viewportTransform().inverted()
        return inverted.map(pos)

    def _can_paint(self) -> bool:
        return self.painting_enabled and self.showing_document and not self.doc.candidates

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        kind = event.type()
        if kind in (QEvent.Type.TabletPress, QEvent.Type.TabletMove, QEvent.Type.TabletRelease):
            # Keep the pressure, then let Qt turn the tablet event into the mouse event we paint with.
            self._pressure = max(0.05, float(event.pressure())) if kind != QEvent.Type.TabletRelease else 1.0
            self._tablet_down = kind != QEvent.Type.TabletRelease
            event.ignore()
            return False
        return super().viewportEvent(event)

    def _event_pressure(self, event: QMouseEvent) -> float:
        device = event.pointingDevice()
        from PySide6.QtGui import QInputDevice

        if device is not None and device.type() == QInputDevice.DeviceType.Stylus and self._tablet_down:
            return self._pressure
        return 1.0

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button != Qt.MouseButton.LeftButton or not self._can_paint():
            event.ignore()
            return
        pos = self.image_pos(event.position())
        tool = self.doc.brush.tool
        erase = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        # On a pose layer a joint under the pointer is dragged (Ctrl+click hides it) whatever the tool;
        # elsewhere on the layer the tools paint as on any layer.
        joint = self.doc.pose_joint_at(pos.x(), pos.y(), PoseHandlesItem.RADIUS * 1.5 / max(self._zoom, 1e-3))
        if joint is None and event.modifiers() & Qt.KeyboardModifier.ShiftModifier \
                and self.doc.add_pose_joint(pos.x(), pos.y()):  # Shift+click puts a hidden joint back there
            event.accept()
            return
        if joint is not None:
            if erase:
                self.doc.remove_pose_joint(*joint)
            else:
                self.doc.begin_pose_drag(*joint)
            event.accept()
            return
        if tool in ("brush", "eraser"):
            self.doc.begin_stroke(pos.x(), pos.y(), self._event_pressure(event))
        elif tool == "fill":
            self.doc.flood_fill(pos.x(), pos.y(), erase)
        elif tool == "picker":
            self.doc.pick_colour(pos.x(), pos.y())
        else:
            self._shape = [pos]
            self._shape_erase = erase
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        pos = self.image_pos(event.position())
        self.cursor_item.setPos(pos)
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            return
        if self.doc.stroking:
            self.doc.stroke_to(pos.x(), pos.y(), self._event_pressure(event))
        elif self.doc.pose_dragging:
            self.doc.pose_drag_to(pos.x(), pos.y())
        elif self._shape:
            if self.doc.brush.tool == "rectangle":
                self._shape = [self._shape[0], pos]
            else:
                self._shape.append(pos)
            self._update_outline()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        if self.doc.stroking:
            self.doc.end_stroke()
        elif self.doc.pose_dragging:
            self.doc.end_pose_drag()
        elif self._shape:
            points = self._shape_points()
            self._shape = []
            self.outline_item.setPath(QPainterPath())
            self.doc.fill_polygon(points, self._shape_erase)
        event.accept()

    def _shape_points(self) -> list[tuple[float, float]]:
        if self.doc.brush.tool == "rectangle" and len(self._shape) == 2:
            a, b = self._shape
            l, r = sorted((round(a.x()), round(b.x())))
            t, bt = sorted((round(a.y()), round(b.y())))
            return [(l, t), (r, t), (r, bt), (l, bt)]
        return [(p.x(), p.y()) for p in self._shape]

    def _update_outline(self) -> None:
        path = QPainterPath()
        points = self._shape_points()
        if len(points) >= 2:
            path.moveTo(*points[0])
            for p in points[1:]:
                path.lineTo(*p)
            path.closeSubpath()
        self.outline_item.setPath(path)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            self.cursor_item.hide()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor()
            return
        super().keyReleaseEvent(event)

    def enterEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._update_cursor()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cursor_item.hide()
        super().leaveEvent(event)

    def _update_cursor(self) -> None:
        brushlike = self.doc.brush.tool in ("brush", "eraser")
        self.cursor_item.set_state(self.doc.brush.size if brushlike else 0.0, self._zoom)
        show = self._can_paint() and not self._space and self.underMouse()
        self.cursor_item.setVisible(show)
        self.viewport().setCursor(Qt.CursorShape.BlankCursor if show and brushlike else
                                  Qt.CursorShape.CrossCursor if show else Qt.CursorShape.ArrowCursor)

    placeholder = ""

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt name)
        if not self.placeholder:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(170, 170, 178))
        painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                         int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.placeholder)
        painter.restore()

    # -- drag and drop ------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt name)
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt name)
        mime = event.mimeData()
        paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if paths:
            self.files_dropped.emit(paths)
        elif mime.hasImage():
            self.image_dropped.emit(QImage(mime.imageData()))
        event.acceptProposedAction()
