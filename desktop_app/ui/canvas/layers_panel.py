"""The layers panel beside the canvas: the stack (top first, the mask pinned above it), add / delete /
duplicate / move up and down (or drag), show and hide (the check box), rename (double-click),
opacity, and the selected layer's control or region properties (a control layer: Make from picture;
a pose layer: Add / Remove figure); export as PNG or .ora.

Every change goes through the document's undo stack (CanvasDocument's layer operations); choosing
the active layer is not an edit. GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.canvas_layers import CONTROL_KINDS, KIND_LABELS, PICTURE_PREPROCESSORS
from desktop_app.state.canvas_pose import is_pose_layer

KEY_ROLE = Qt.ItemDataRole.UserRole + 1
CONTROL_LABELS = {"scribble": "Scribble / sketch", "lineart": "Line art", "canny": "Canny edges", "depth": "Depth",
                  "pose": "Pose", "tile": "Tile", "inpaint": "Inpaint"}


class LayersPanel(QWidget):
    export_requested = Signal(str)  # a path chosen in the export dialog
    notice = Signal(str)  # a plain line for the window's banner
    make_requested = Signal(str, str)  # a control layer's key and the kind to make from the picture

    def __init__(self, doc: CanvasDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("LayersPanel")
        self.doc = doc
        # A fixed minimum (not the layout's): on a narrow window the panel gives way before the canvas.
        self.setMinimumWidth(120)
        self.setMaximumWidth(260)

        self.list = QListWidget()
        self.list.setObjectName("LayerList")
        self.list.setAccessibleName("Layers")
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setToolTip("The layers, top first. Click one to paint on it; the check box shows or hides it; "
                             "double-click renames; drag to reorder. Generate works on the visible image layers.")

        def tool(text: str, tip: str, slot) -> QToolButton:
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            return b

        self.add_button = QToolButton()
        self.add_button.setText("Add")
        self.add_button.setToolTip("Add a layer above the selected one: an image layer to paint on, a control "
                                   "layer (the shape ControlNet follows), a region (an area with its own prompt) "
                                   "or a reference image (its style or subject, through an IP-Adapter)")
        self.add_menu = QMenu(self)
        for kind, text in (("image", "Image layer"), ("control", "Control layer"), ("region", "Region layer")):
            self.add_menu.addAction(text, lambda k=kind: self.doc.add_layer(k))
        self.picture_menu = self.add_menu.addMenu("Control layer from the picture")
        self.picture_menu.setToolTip("A control layer filled with what its preprocessor makes of the picture "
                                     "(shown on the canvas: paint over it to change it)")
        for kind in PICTURE_PREPROCESSORS:
            self.picture_menu.addAction(CONTROL_LABELS[kind], lambda k=kind: self.add_from_picture(k))
        self.add_menu.addAction("Pose layer (a figure to pose)", self.add_pose_layer)
        self.add_menu.addAction("Reference image…", self.choose_reference)
        self.add_menu.addAction("Reference layer (paint on it)", lambda: self.doc.add_layer("reference"))
        self.add_button.setMenu(self.add_menu)
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.delete_button = tool("Delete", "Delete the selected layer (Ctrl+Z brings it back)", self.delete_selected)
        self.duplicate_button = tool("Copy", "Duplicate the selected layer", self.duplicate_selected)
        self.up_button = tool("▲", "Move the selected layer up", lambda: self.move_selected(1))
        self.down_button = tool("▼", "Move the selected layer down", lambda: self.move_selected(-1))
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setToolTip("Save the canvas: a flattened PNG, or every layer as OpenRaster (.ora) "
                                      "for Krita, GIMP and MyPaint, or as a Photoshop file (.psd) for Photoshop, "
                                      "Affinity Photo, Clip Studio Paint and Photopea")
        export_menu = QMenu(self)
        export_menu.addAction("Flattened PNG…", lambda: self.choose_export("png"))
        export_menu.addAction("Layers as OpenRaster (.ora)…", lambda: self.choose_export("ora"))
        export_menu.addAction("Layers as Photoshop (.psd)…", lambda: self.choose_export("psd"))
        self.export_button.setMenu(export_menu)
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)

        self.opacity_spin = QSpinBox()
        self.opacity_spin.setRange(0, 100)
        self.opacity_spin.setSuffix(" %")
        self.opacity_spin.setToolTip("The selected layer's opacity")
        self.opacity_spin.setAccessibleName("Layer opacity")
        self.control_combo = QComboBox()
        for kind in CONTROL_KINDS:
            self.control_combo.addItem(CONTROL_LABELS[kind], kind)
        self.control_combo.setToolTip("What this control layer is: the kind of control model it feeds")
        self.strength_spin = _dspin(0, 2, "How strongly the result follows this layer")
        self.start_spin = _dspin(0, 1, "From which fraction of the steps the control applies")
        self.end_spin = _dspin(0, 1, "Until which fraction of the steps the control applies")
        self.weight_spin = _dspin(0, 2, "How much of this reference image's style and subject the result takes "
                                  "(the IP-Adapter or Redux weight; 0: none)")
        self.weight_spin.setAccessibleName("Reference weight")
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("what this region shows")
        self.prompt_edit.setToolTip("What the painted area shows (the main prompt goes everywhere else)")

        self.make_button = tool("Make from picture", "Fill this layer with the control image its kind's "
                                "preprocessor makes from the picture (canny edges, line art, a depth map…): "
                                "what the control model gets, to paint over", self.make_selected)
        self.add_figure_button = tool("Add figure", "A standing figure on this pose layer: drag its joints on the "
                                      "canvas to pose it (Ctrl+click a joint hides it, Shift+click puts it back)", self.add_figure)
        self.remove_figure_button = tool("Remove figure", "Take the last figure added off this pose layer",
                                         self.remove_figure)
        control_buttons = QHBoxLayout()
        control_buttons.setSpacing(2)
        for b in (self.make_button, self.add_figure_button, self.remove_figure_button):
            control_buttons.addWidget(b)
        control_buttons.addStretch(1)
        self.control_box = QWidget()
        form = QFormLayout(self.control_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Control", self.control_combo)
        form.addRow("Strength", self.strength_spin)
        form.addRow("Start", self.start_spin)
        form.addRow("End", self.end_spin)
        form.addRow(control_buttons)
        self.region_box = QWidget()
        rform = QFormLayout(self.region_box)
        rform.setContentsMargins(0, 0, 0, 0)
        rform.addRow("Prompt", self.prompt_edit)
        self.reference_box = QWidget()
        reform = QFormLayout(self.reference_box)
        reform.setContentsMargins(0, 0, 0, 0)
        reform.addRow("Weight", self.weight_spin)

        title = QLabel("Layers")
        title.setObjectName("PanelTitle")
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for b in (self.add_button, self.delete_button, self.duplicate_button, self.up_button, self.down_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        opacity_row.addWidget(self.opacity_spin, 1)
        opacity_row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(title)
        layout.addLayout(buttons)
        layout.addWidget(self.list, 1)
        self.detail_label = QLabel()
        self.detail_label.setWordWrap(True)
        self.detail_label.setObjectName("LayerDetail")
        layout.addWidget(self.detail_label)
        layout.addLayout(opacity_row)
        layout.addWidget(self.control_box)
        layout.addWidget(self.region_box)
        layout.addWidget(self.reference_box)

        self.list.currentItemChanged.connect(self._on_current_changed)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.model().rowsMoved.connect(self._on_rows_moved)
        self.opacity_spin.valueChanged.connect(self._on_opacity)
        self.control_combo.currentIndexChanged.connect(
            lambda _i: self._set_props(control=self.control_combo.currentData()))
        self.strength_spin.valueChanged.connect(lambda v: self._set_props(strength=v))
        self.start_spin.valueChanged.connect(lambda v: self._set_props(start=v))
        self.end_spin.valueChanged.connect(lambda v: self._set_props(end=v))
        self.weight_spin.valueChanged.connect(lambda v: self._set_props(weight=v))
        self.prompt_edit.editingFinished.connect(lambda: self._set_props(prompt=self.prompt_edit.text()))
        doc.layers_changed.connect(self.refresh)
        doc.document_replaced.connect(self.refresh)
        # Bound methods, not lambdas: Qt disconnects them when the panel goes (the document may stay).
        doc.brush.mask_visible_changed.connect(self._on_mask_visible_changed)
        doc.undo_stack.indexChanged.connect(self._on_undo_index_changed)  # after a stroke, an undo
        self._refreshing = False
        self.refresh()

    # -- showing the stack ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the list from the document (top first, the mask above all) and the property fields."""
        doc = self.doc
        self._refreshing = True
        blockers = [QSignalBlocker(w) for w in (self.list, self.opacity_spin, self.control_combo, self.strength_spin,
                                               self.start_spin, self.end_spin, self.prompt_edit,
                                               self.weight_spin)]
        try:
            self.list.clear()
            mask = QListWidgetItem("Mask · what Inpaint regenerates")
            mask.setData(KEY_ROLE, "mask")
            mask.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable)
            mask.setCheckState(Qt.CheckState.Checked if doc.brush.mask_visible else Qt.CheckState.Unchecked)
            mask.setToolTip("Paint the area to regenerate with Inpaint (select it to paint the mask); "
                            "the check box shows or hides its overlay (M)")
            self.list.addItem(mask)
            current = mask
            for layer in reversed(doc.layers):
                item = QListWidgetItem(layer.name)
                item.setData(KEY_ROLE, layer.key)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable
                              | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled)
                item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
                detail = KIND_LABELS[layer.kind]
                if layer.kind == "control":
                    detail += f": {CONTROL_LABELS[layer.props['control']]}, {layer.props['strength']:.2f}"
                    if is_pose_layer(layer):
                        n = len(layer.props.get("pose") or ())
                        detail += f" · {n} figure{'s' if n != 1 else ''}: drag a joint on the canvas"
                    elif layer.props.get("made_from"):
                        made = layer.props["made_from"]
                        detail += " · made from the picture" + (
                            f" ({CONTROL_LABELS[made]})" if made != layer.props["control"] else "")
                elif layer.kind == "region":
                    detail += f": {layer.props['prompt'] or '(no prompt yet)'}"
                elif layer.kind == "reference":
                    detail += f" image, weight {layer.props['weight']:.2f}"
                if layer.opacity < 1:
                    detail += f" · {layer.opacity * 100:.0f}%"
                item.setToolTip(f"{layer.name} — {detail}")
                item.setData(Qt.ItemDataRole.AccessibleDescriptionRole, detail)
                item.setIcon(_thumbnail(layer))
                self.list.addItem(item)
                if layer.key == doc.active_key:
                    current = item
            self.list.setCurrentItem(current)
            layer = doc.active_layer
            has = layer is not None
            self.detail_label.setText(current.toolTip() if has else "The mask: paint what Inpaint regenerates")
            for w in (self.delete_button, self.duplicate_button, self.up_button, self.down_button, self.opacity_spin):
                w.setEnabled(has)
            self.add_button.setEnabled(doc.has_image)
            self.export_button.setEnabled(doc.has_image)
            self.opacity_spin.setValue(round(layer.opacity * 100) if has else 100)
            self.control_box.setVisible(has and layer.kind == "control")
            self.region_box.setVisible(has and layer.kind == "region")
            self.reference_box.setVisible(has and layer.kind == "reference")
            if has and layer.kind == "reference":
                self.weight_spin.setValue(layer.props["weight"])
            if has and layer.kind == "control":
                self.control_combo.setCurrentIndex(self.control_combo.findData(layer.props["control"]))
                self.strength_spin.setValue(layer.props["strength"])
                self.start_spin.setValue(layer.props["start"])
                self.end_spin.setValue(layer.props["end"])
                self.make_button.setVisible(layer.props["control"] in PICTURE_PREPROCESSORS)
                self.add_figure_button.setVisible(is_pose_layer(layer))
                self.remove_figure_button.setVisible(is_pose_layer(layer))
                self.remove_figure_button.setEnabled(bool(layer.props.get("pose")))
            if has and layer.kind == "region":
                self.prompt_edit.setText(layer.props["prompt"])
        finally:
            del blockers
            self._refreshing = False

    def _on_mask_visible_changed(self, _visible: bool) -> None:
        self.refresh()

    def _on_undo_index_changed(self, _index: int) -> None:
        self.refresh_thumbnails()

    def refresh_thumbnails(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        blocker = QSignalBlocker(self.list)
        try:
            for i in range(self.list.count()):
                item = self.list.item(i)
                layer = self.doc.layer(item.data(KEY_ROLE))
                if layer is not None:
                    item.setIcon(_thumbnail(layer))
        finally:
            del blocker
            self._refreshing = False

    def row_keys(self) -> list[str]:
        return [self.list.item(i).data(KEY_ROLE) for i in range(self.list.count())]

    # -- edits ----------------------------------------------------------------------------------

    def _on_current_changed(self, item: QListWidgetItem | None, _previous) -> None:
        if item is not None and not self._refreshing:
            self.doc.set_active(item.data(KEY_ROLE))

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._refreshing:
            return
        key = item.data(KEY_ROLE)
        if key == "mask":
            self.doc.brush.set_mask_visible(item.checkState() == Qt.CheckState.Checked)
            return
        layer = self.doc.layer(key)
        if layer is None:
            return
        visible = item.checkState() == Qt.CheckState.Checked
        if visible != layer.visible:
            self.doc.set_layer_visible(key, visible)
        elif item.text() != layer.name:
            if not self.doc.rename_layer(key, item.text()):
                self.refresh()

    def _on_rows_moved(self, *_args) -> None:
        """A drag reordered the list: move the dragged layer to where it was dropped (one undo step)."""
        if self._refreshing:
            return
        wanted = list(reversed([k for k in self.row_keys() if k != "mask"]))  # bottom first, as the document keeps them
        current = [layer.key for layer in self.doc.layers]
        for key in current:  # the one layer whose move turns the stack into the list's order
            trial = [k for k in current if k != key]
            trial.insert(wanted.index(key), key)
            if trial == wanted and trial != current:
                # After the drop has finished with the list: the move rebuilds it.
                QTimer.singleShot(0, self, lambda k=key, to=wanted.index(key): self.doc.move_layer(k, to))
                return
        QTimer.singleShot(0, self, self.refresh)

    def delete_selected(self) -> None:
        key = self.doc.active_key
        if key != "mask" and not self.doc.delete_layer(key):
            self.notice.emit("The canvas keeps at least one image layer: add another before deleting this one.")

    def duplicate_selected(self) -> None:
        if self.doc.active_key != "mask":
            self.doc.duplicate_layer(self.doc.active_key)

    def move_selected(self, step: int) -> None:
        key = self.doc.active_key
        i = self.doc.index_of(key)
        if i >= 0:
            self.doc.move_layer(key, i + step)

    def _on_opacity(self, value: int) -> None:
        if self.doc.active_key != "mask":
            self.doc.set_layer_opacity(self.doc.active_key, value / 100)

    def _set_props(self, **props) -> None:
        layer = self.doc.active_layer
        if layer is not None and layer.kind != "image" and not self._refreshing:
            self.doc.set_layer_props(layer.key, **props)

    def add_from_picture(self, kind: str) -> None:
        """A new control layer of ``kind``, filled from the picture (the window's canvas actions make it)."""
        layer = self.doc.add_layer("control", f"{CONTROL_LABELS[kind]} from the picture", control=kind)
        if layer is not None:
            self.make_requested.emit(layer.key, kind)

    def make_selected(self) -> None:
        layer = self.doc.active_layer
        if layer is not None and layer.kind == "control":
            self.make_requested.emit(layer.key, layer.props["control"])

    def add_pose_layer(self) -> None:
        """A new pose control layer with one standing figure to pose."""
        n = sum(is_pose_layer(layer) for layer in self.doc.layers) + 1
        layer = self.doc.add_layer("control", f"Pose {n}", control="pose")
        if layer is not None:
            self.doc.add_pose_figure(layer.key)

    def add_figure(self) -> None:
        if is_pose_layer(self.doc.active_layer):
            if not self.doc.add_pose_figure(self.doc.active_key):
                self.notice.emit("A pose layer holds at most 16 figures.")

    def remove_figure(self) -> None:
        if is_pose_layer(self.doc.active_layer):
            self.doc.remove_pose_figure(self.doc.active_key)

    def choose_reference(self) -> None:
        """Open a picture as a new reference layer (fitted inside the canvas)."""
        path, _ = QFileDialog.getOpenFileName(self, "Open a reference image", "", "Images (*.png *.jpg *.jpeg *.webp)")
        if path:
            self.add_reference(path)

    def add_reference(self, path: str) -> bool:
        """``path`` as a new reference layer; a plain notice when it cannot be read."""
        from engine.api import EaselError
        from engine.images import open_image

        try:
            picture = open_image(path)
        except (EaselError, OSError) as exc:
            self.notice.emit(f"Cannot use {Path(path).name} as a reference: {exc}")
            return False
        return self.doc.add_picture_layer(picture, "reference", f"Reference: {Path(path).stem}") is not None

    def choose_export(self, kind: str) -> None:
        stem = Path(self.doc.source).stem if self.doc.source and "." in self.doc.source else "canvas"
        if kind == "ora":
            path, _ = QFileDialog.getSaveFileName(self, "Export the layers", f"{stem}.ora", "OpenRaster (*.ora)")
        elif kind == "psd":
            path, _ = QFileDialog.getSaveFileName(self, "Export the layers", f"{stem}.psd", "Photoshop (*.psd)")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export the flattened image", f"{stem}.png", "PNG (*.png)")
        if path:
            self.export_requested.emit(path)


def _thumbnail(layer) -> QIcon:
    """The layer's pixels at 32 px over a light checkerboard (fast sampling: cheap on any size)."""
    size = 32
    pix = QPixmap(size, size)
    pix.fill(QColor(235, 235, 238))
    p = QPainter(pix)
    for y in range(0, size, 8):
        for x in range((y // 8 % 2) * 8, size, 16):
            p.fillRect(x, y, 8, 8, QColor(205, 205, 210))
    if not layer.qimage.isNull():
        small = layer.qimage.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.FastTransformation)
        p.drawImage((size - small.width()) // 2, (size - small.height()) // 2, small)
    p.end()
    return QIcon(pix)


def _dspin(lo: float, hi: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)
    return spin
