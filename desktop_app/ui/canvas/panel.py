"""The central panel: tool bar, the canvas view, and the bars for viewing images and candidates.

It is also the window's viewer: ``set_image`` shows a live preview or a gallery image over the
canvas (with "Edit in canvas" and "Back to canvas"), ``set_image(None)`` goes back to the canvas. Canvas shortcuts work while the canvas has the focus (click it), so typing in the
prompt box never paints or switches tools.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QGuiApplication, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.canvas_actions import CanvasActions
from desktop_app.state.params import GenerationParameters
from desktop_app.ui.canvas.dialogs import ExtendCanvasDialog
from desktop_app.ui.canvas.edit_bar import CandidateBarWidget, EditSettingsWidget, labelled
from desktop_app.ui.canvas.layers_panel import LayersPanel
from desktop_app.ui.canvas.live_bar import LiveBarWidget, LiveResultView
from desktop_app.ui.canvas.view import CanvasView
from desktop_app.ui.labels import ElidedLabel

TOOL_LABELS = (("brush", "Brush", "B"), ("eraser", "Eraser", "E"), ("rectangle", "Rectangle", "R"), ("lasso", "Lasso", "L"),
               ("fill", "Fill", "G"), ("picker", "Pick", "I"))
PLACEHOLDER = "No image yet. Write a prompt and press Ctrl+Enter,\nor open (Ctrl+O), paste (Ctrl+Shift+V) or drop an image here to edit it."


class CanvasPanel(QWidget):
    open_requested = Signal()  # the window shows the file dialog
    edit_requested = Signal()  # "Edit in canvas" on the image shown: the window knows where it came from
    variations_requested = Signal()  # Variations… / Upscale… of the image shown (or the canvas)
    upscale_requested = Signal()

    def __init__(self, canvas: CanvasActions, params: GenerationParameters, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("CanvasPanel")
        self.canvas = canvas
        self.doc = doc = canvas.doc
        self.view = CanvasView(doc)
        self.edit_settings = EditSettingsWidget(params, canvas)
        self.live = canvas.live
        self.live_bar = LiveBarWidget(canvas.live)
        self.edit_settings.bar.addSeparator()
        self.edit_settings.bar.addWidget(self.live_bar.live_button)
        self.live_view = LiveResultView(canvas.live)
        self.candidate_bar = CandidateBarWidget(doc)
        self.shortcuts: list[tuple[str, str]] = []
        self.actions_by_name: dict[str, QAction] = {}
        self._is_preview = False
        self._placeholder = PLACEHOLDER
        self._caption_text = ""

        self.viewer_bar = QWidget()
        self.viewer_bar.setObjectName("ViewerBar")
        self.viewer_label = ElidedLabel()  # a long file name must not widen the window
        self.viewer_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.edit_result_button = QPushButton("Edit in canvas")
        self.edit_result_button.setToolTip("Make this image the canvas, to paint a mask and change part of it (Ctrl+E)")
        self.back_button = QPushButton("Back to canvas")
        self.back_button.setToolTip("Show the canvas again")
        vb = QHBoxLayout(self.viewer_bar)
        vb.setContentsMargins(8, 2, 8, 2)
        vb.addWidget(self.viewer_label, 1)
        vb.addWidget(self.edit_result_button)
        vb.addWidget(self.back_button)
        self.caption = ElidedLabel()
        self.caption.setObjectName("CanvasCaption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        self.caption.setMinimumWidth(0)
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.toolbar = QToolBar("Canvas tools")
        self.toolbar.setObjectName("CanvasToolbar")
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self._build_toolbar()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.edit_settings)
        layout.addWidget(self.viewer_bar)
        self.layers_panel = LayersPanel(doc)
        self.layers_panel.layout().insertWidget(1, self.paint_bar)
        middle = QHBoxLayout()
        middle.setContentsMargins(0, 0, 0, 0)
        middle.setSpacing(2)
        middle.addWidget(self.view, 1)
        middle.addWidget(self.live_view, 1)
        middle.addWidget(self.layers_panel)
        layout.addLayout(middle, 1)
        layout.addWidget(self.candidate_bar)
        layout.addWidget(self.live_bar)
        footer = QHBoxLayout()
        footer.setContentsMargins(8, 0, 0, 0)
        footer.addWidget(self.caption, 1)
        footer.addWidget(self.zoombar)
        layout.addLayout(footer)

        self.edit_result_button.clicked.connect(self.edit_requested)
        self.back_button.clicked.connect(lambda: self.set_image(None))
        # The bar hides once the results are gone: the focus goes back to the canvas, not to
        # whatever widget is next in the window's tab order (the gallery's search box).
        self.candidate_bar.accept_requested.connect(lambda: (canvas.accept(), self.view.setFocus()))
        self.candidate_bar.discard_requested.connect(lambda: (canvas.discard(), self.view.setFocus()))
        self.layers_panel.export_requested.connect(canvas.export)
        self.layers_panel.notice.connect(canvas.reporter.notice)
        self.layers_panel.make_requested.connect(lambda key, kind: canvas.make_from_picture(key, kind))
        self.view.files_dropped.connect(canvas.open_files)
        self.view.image_dropped.connect(lambda image: canvas.paste(image, "a dropped image"))
        self.view.zoom_changed.connect(self._on_view_zoom_changed)
        self.edit_settings.hint_changed.connect(lambda _t: self._set_caption_text(self._caption_text))
        doc.document_replaced.connect(self._on_doc_document_replaced)
        for signal in (canvas.live.frame_changed, canvas.live.overlay_changed, canvas.live.enabled_changed):
            signal.connect(lambda *_a: self._show_live_over())
        doc.candidates_changed.connect(self._refresh)
        doc.undo_stack.canUndoChanged.connect(self.actions_by_name["undo"].setEnabled)
        doc.undo_stack.canRedoChanged.connect(self.actions_by_name["redo"].setEnabled)
        b = doc.brush
        b.size_changed.connect(lambda v: self.size_spin.setValue(round(v)))
        b.hardness_changed.connect(lambda v: self.hardness_spin.setValue(round(v * 100)))
        b.opacity_changed.connect(lambda v: self.opacity_spin.setValue(round(v * 100)))
        b.tool_changed.connect(lambda t: self.actions_by_name[t].setChecked(True))
        b.mask_visible_changed.connect(self.actions_by_name["show_mask"].setChecked)
        self._set_caption_text("")
        self._refresh()

    # -- tool bar and shortcuts ---------------------------------------------------------------

    def _act(self, name: str, text: str, keys: str | list[str] | None, slot, tip: str, *, checkable: bool = False,
             toolbar: bool = True) -> QAction:
        action = QAction(text, self)
        action.setToolTip(f"{tip} ({keys if isinstance(keys, str) else ' or '.join(keys)})" if keys else tip)
        action.setCheckable(checkable)
        if keys:
            keys = [keys] if isinstance(keys, str) else keys
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.shortcuts.append((" or ".join(QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in keys),
                                   f"Canvas: {tip}"))
        action.triggered.connect(lambda checked=False: slot(checked) if checkable else slot())
        self.addAction(action)
        if toolbar:
            self.toolbar.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _build_toolbar(self) -> None:
        doc, b = self.doc, self.doc.brush
        # Open… is in the File menu (Ctrl+O) and the empty canvas says so: the bar keeps its width for
        # the tools, so that it fits a 1280 px window beside the prompt panel and the queue.
        self._act("open", "Open…", None, self.open_requested.emit, "Open an image to edit (Ctrl+O); or paste or drop one",
                  toolbar=False)
        self._act("paste", "Paste", "Ctrl+V", self.paste_clipboard, "Paste an image from the clipboard as the canvas",
                  toolbar=False)
        group = QActionGroup(self)
        for tool, label, key in TOOL_LABELS:
            tips = {"brush": "Paint on the selected layer: the mask (the area to regenerate), or a layer in the brush colour",
                    "eraser": "Erase on the selected layer (the mask, or a layer's pixels)",
                    "rectangle": "Fill a rectangle on the selected layer (hold Ctrl to clear one)",
                    "lasso": "Fill a free-hand shape on the selected layer (hold Ctrl to clear one)",
                    "fill": "Fill the connected area of similar colour on the selected layer (hold Ctrl to clear it)",
                    "picker": "Pick the brush colour from the image"}
            a = self._act(tool, label, key, lambda _c=False, t=tool: b.set_tool(t), tips[tool], checkable=True,
                          toolbar=tool not in ("fill", "picker"))
            a.setChecked(tool == b.tool)
            group.addAction(a)
        self.size_spin = _spin(1, 1000, round(b.size), " px", "Brush size ([ smaller, ] larger)")
        self.size_spin.valueChanged.connect(b.set_size)
        self.hardness_spin = _spin(0, 100, round(b.hardness * 100), " %", "Hardness: 100% is a hard edge, lower is softer")
        self.hardness_spin.valueChanged.connect(lambda v: b.set_hardness(v / 100))
        self.opacity_spin = _spin(1, 100, round(b.opacity * 100), " %", "Opacity: how strongly a stroke masks (partial = a softer change)")
        self.opacity_spin.valueChanged.connect(lambda v: b.set_opacity(v / 100))
        for label, spin in (("Size", self.size_spin), ("Hardness", self.hardness_spin), ("Opacity", self.opacity_spin)):
            self.toolbar.addWidget(labelled(QLabel(f" {label}"), spin))
        self.colour_button = QToolButton()
        self.colour_button.setObjectName("BrushColourButton")
        self.colour_button.setToolTip("The brush colour, for painting on layers (the Pick tool takes it from the image)")
        self.colour_button.setAccessibleName("Brush colour")
        self.colour_button.clicked.connect(self.choose_brush_colour)
        self._show_brush_colour(b.colour)
        b.colour_changed.connect(self._show_brush_colour)
        # The layer-painting tools sit over the layers panel (the main bar must fit a 1280 px window).
        self.paint_bar = QToolBar("Layer painting")
        self.paint_bar.setObjectName("PaintToolbar")
        self.paint_bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.paint_bar.addAction(self.actions_by_name["fill"])
        self.paint_bar.addAction(self.actions_by_name["picker"])
        self.paint_bar.addWidget(labelled(QLabel(" Colour "), self.colour_button))
        self._act("smaller", "Smaller brush", "[", lambda: b.step_size(-1), "Smaller brush", toolbar=False)
        self._act("larger", "Larger brush", "]", lambda: b.step_size(1), "Larger brush", toolbar=False)
        self.toolbar.addSeparator()

        mask_menu = QMenu("Mask", self)
        self.mask_menu = mask_menu
        show = self._act("show_mask", "Show mask", "M", b.set_mask_visible, "Show or hide the mask", checkable=True, toolbar=False)
        show.setChecked(b.mask_visible)
        mask_menu.addAction(show)
        for name, text, keys, slot, tip in (
            ("invert", "Invert mask", "Ctrl+I", doc.invert_mask, "Invert the mask"),
            ("clear", "Clear mask", "Ctrl+Shift+A", doc.clear_mask, "Clear the whole mask"),
            ("grow", "Grow mask by 8 px", None, lambda: doc.grow_mask(8), "Grow the mask by 8 pixels"),
            ("shrink", "Shrink mask by 8 px", None, lambda: doc.grow_mask(-8), "Shrink the mask by 8 pixels"),
            ("feather", "Feather mask by 8 px", None, lambda: doc.feather_mask(8), "Soften the mask edge over 8 pixels"),
        ):
            mask_menu.addAction(self._act(name, text, keys, slot, tip, toolbar=False))
        mask_menu.addSeparator()
        mask_menu.addAction(self._act("overlay_colour", "Overlay colour…", None, self.choose_overlay_colour,
                                      "The colour the mask is shown in", toolbar=False))
        opacity_menu = mask_menu.addMenu("Overlay opacity")
        for pct in (25, 50, 75, 100):
            opacity_menu.addAction(f"{pct}%", lambda p=pct: b.set_overlay(opacity=p / 100))
        button = QToolButton()
        button.setText("Mask")
        button.setMenu(mask_menu)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        button.setToolTip("Show/hide, invert, clear, grow, shrink and feather the mask; its overlay colour")
        self.toolbar.addWidget(button)
        self._act("extend", "Extend…", None, self.extend_dialog, "Extend the canvas on any side to outpaint")
        self._act("variations", "Vary…", None, self.variations_requested.emit,
                  "New versions of the image shown (or the canvas), each from a new seed (Ctrl+Shift+R)")
        self._act("upscale", "Upscale…", None, self.upscale_requested.emit,
                  "Enlarge the image shown (or the canvas) x2 or x4 (Ctrl+Shift+U)")
        # Undo and zoom live in the footer, under the view.
        self.zoombar = QToolBar("Zoom")
        self.zoombar.setObjectName("CanvasZoomBar")
        self.zoombar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        main_bar, self.toolbar = self.toolbar, self.zoombar
        undo = self._act("undo", "Undo", "Ctrl+Z", doc.undo_stack.undo, "Undo the last stroke or edit")
        redo = self._act("redo", "Redo", ["Ctrl+Shift+Z", "Ctrl+Y"], doc.undo_stack.redo, "Redo")
        undo.setEnabled(False)
        redo.setEnabled(False)
        self.zoombar.addSeparator()
        self._act("zoom_out", "−", ["-", "Ctrl+-"], lambda: self.view.zoom_by(1 / 1.25), "Zoom out")
        self.zoom_label = QLabel(" 100% ")
        self.zoom_label.setMinimumWidth(48)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoombar.addWidget(self.zoom_label)
        self._act("zoom_in", "+", ["+", "=", "Ctrl++"], lambda: self.view.zoom_by(1.25), "Zoom in")
        self._act("fit", "Fit", ["0", "Ctrl+0"], self.view.fit, "Fit the image in the view")
        self._act("actual", "100%", ["1", "Ctrl+1"], self.view.actual_size, "Show at 100% (one image pixel per screen pixel)")
        self.toolbar = main_bar
        # Candidates (only while results wait over the canvas).
        self._act("accept", "Accept", ["Return", "Enter"], self._accept_if_any, "Accept the result shown", toolbar=False)
        self._act("discard", "Discard", "Backspace", self._discard_if_any, "Discard the results", toolbar=False)
        self._act("compare", "Compare", "C", lambda: doc.set_show_before(not doc.show_before), "Toggle before / after", toolbar=False)
        self._act("prev_candidate", "Previous result", "Left", lambda: doc.select_candidate(doc.candidate_index - 1), "Previous result", toolbar=False)
        self._act("next_candidate", "Next result", "Right", lambda: doc.select_candidate(doc.candidate_index + 1), "Next result", toolbar=False)

    def _accept_if_any(self) -> None:
        if self.doc.candidates:
            self.canvas.accept()

    def _discard_if_any(self) -> None:
        if self.doc.candidates:
            self.canvas.discard()

    # -- commands -----------------------------------------------------------------------------

    def paste_clipboard(self) -> bool:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if paths:
                self.canvas.open_files(paths)
                return True
        return self.canvas.paste(QGuiApplication.clipboard().image())

    def choose_overlay_colour(self) -> None:
        colour = QColorDialog.getColor(self.doc.brush.overlay_colour, self, "Mask overlay colour")
        if colour.isValid():
            self.doc.brush.set_overlay(colour=colour)

    def choose_brush_colour(self) -> None:
        colour = QColorDialog.getColor(self.doc.brush.colour, self, "Brush colour")
        if colour.isValid():
            self.doc.brush.set_colour(colour)

    def _show_brush_colour(self, colour: QColor) -> None:
        pix = QPixmap(16, 16)
        pix.fill(colour)
        self.colour_button.setIcon(QIcon(pix))
        self.colour_button.setToolTip(f"The brush colour ({colour.name()}), for painting on layers; the Pick tool takes it from the image")

    def extend_dialog(self) -> None:
        if not self.doc.has_image:
            self.canvas.reporter.notice("Open an image first: there is no canvas to extend.")
            return
        dialog = ExtendCanvasDialog(self.doc.width, self.doc.height, self)
        if dialog.exec():
            self.canvas.extend(*dialog.amounts(), fill=dialog.fill())

    # -- the viewer: live previews and gallery images -------------------------------------------

    @property
    def pixmap(self) -> QPixmap | None:
        image = self.view.viewer_image
        return QPixmap.fromImage(image) if image is not None else None

    @property
    def is_preview(self) -> bool:
        return self._is_preview and self.view.viewer_image is not None

    @property
    def showing_canvas(self) -> bool:
        return self.view.viewer_image is None

    def set_image(self, image: QImage | None, caption: str = "", *, preview: bool = False) -> None:
        """Show a preview or a result (viewer); None shows the canvas again."""
        self._is_preview = preview and image is not None
        self.view.show_viewer_image(image)
        self._set_caption_text(caption if image is not None else "")
        self._refresh()

    def set_caption(self, caption: str) -> None:
        self._set_caption_text(caption)

    def _set_caption_text(self, text: str) -> None:
        """The caption under the view: a preview's step, else what Generate will do (an image being
        viewed has its details in the viewer bar above it)."""
        self._caption_text = text
        viewing = self.view.viewer_image is not None and not self._is_preview
        self.caption.setText(self.edit_settings.hint.text() if viewing or not text else text)

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self._refresh()

    def show_canvas_preview(self, image: QImage | None, box: tuple[int, int, int, int] | None, caption: str = "") -> None:
        """A live preview over the canvas's work region while a canvas job runs."""
        if self.view.viewer_image is not None:
            self.set_image(None)
        self.view.show_preview(image, box)
        if caption:
            self._set_caption_text(caption)

    # -- state --------------------------------------------------------------------------------

    def _on_doc_document_replaced(self) -> None:
        self.view.show_viewer_image(None)
        self._is_preview = False
        self._set_caption_text("")
        self._refresh()

    def _show_live_over(self) -> None:
        live = self.live
        # Not over an image being viewed, nor over results waiting to be accepted.
        over = (live.enabled and live.overlay and live.frame is not None and self.view.viewer_image is None
                and not self.doc.candidates)
        self.view.show_live(live.frame.image if over else None)

    def _on_view_zoom_changed(self, zoom: float) -> None:
        self.zoom_label.setText(f" {zoom * 100:.0f}% ")

    def _refresh(self) -> None:
        viewing = self.view.viewer_image is not None
        self.viewer_bar.setVisible(viewing and not self._is_preview)
        self.back_button.setVisible(self.doc.has_image)
        self.viewer_label.setText(f"Viewing · {self._caption_text}" if self._caption_text else "Viewing an image")
        empty = not viewing and not self.doc.has_image
        self.view.placeholder = self._placeholder if empty else ""
        self.view.viewport().update()
        self.view.painting_enabled = not viewing
        self._show_live_over()


def _spin(lo: int, hi: int, value: int, suffix: str, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setSuffix(suffix)
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)
    spin.setMaximumWidth(68)
    return spin
