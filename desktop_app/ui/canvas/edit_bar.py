"""The canvas's generation row (mode, strength, only-masked region, padding, seam blur) and the
candidate bar (compare, accept, discard)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.canvas import CanvasDocument
from desktop_app.state.canvas_actions import CanvasActions
from desktop_app.state.params import GenerationParameters
from engine.lazy import LazyModule

imageprep = LazyModule("engine.imageprep")  # first used when the hint names a size (an image on the canvas)

MODE_LABELS = dict((("txt2img", "New image"), ("img2img", "Image to image"), ("inpaint", "Inpaint / outpaint"),
                    ("instruct", "Edit with words")))


def labelled(label: QLabel, field: QWidget) -> QWidget:
    """A label and its field as one tool bar item, so a narrow window folds them into the » menu
    together (never a label whose field went missing)."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(0)
    row.addWidget(label)
    row.addWidget(field)
    return box


class EditSettingsWidget(QWidget):
    """Binds to GenerationParameters' editing fields; says what size the work happens at."""

    hint_changed = Signal(str)

    def __init__(self, params: GenerationParameters, canvas: CanvasActions, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("EditSettingsWidget")
        self._params, self._doc, self._canvas = params, canvas.doc, canvas
        doc = canvas.doc
        self.mode_combo = QComboBox()
        self._fill_modes()
        self.mode_combo.setToolTip("What Generate does: make a new image, redo the whole canvas, or "
                                   "regenerate the masked area (extend the canvas first to outpaint)")
        self.mode_combo.setAccessibleName("Generation mode")
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.01, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setToolTip("Strength: how much may change (1 = repaint completely)")
        self.only_masked_check = QCheckBox("Only masked region ")
        self.only_masked_check.setToolTip("Work on the mask's surroundings at the chosen width × height and paste "
                                          "back: small edits on big images keep full detail")
        self.padding_spin = QSpinBox()
        self.padding_spin.setRange(0, 256)
        self.padding_spin.setSuffix(" px")
        self.padding_spin.setToolTip("Context around the mask for Only masked region")
        self.blur_spin = QSpinBox()
        self.blur_spin.setRange(0, 256)
        self.blur_spin.setSuffix(" px")
        self.blur_spin.setToolTip("Seam: the result is blended over this many pixels inside the mask edge; "
                                  "pixels outside the mask never change")
        self.hint = QLabel()
        self.hint.setObjectName("EditHint")
        self.hint.setStyleSheet("color: palette(placeholder-text);")

        # A tool bar rather than a row: when the window is narrow the rest folds into its » menu.
        self.bar = QToolBar("Generation settings")
        self.bar.setObjectName("EditSettingsBar")
        self.strength_label = QLabel(" Strength ")
        self.padding_label = QLabel(" Padding ")
        self.blur_label = QLabel(" Seam blur ")
        for w in (labelled(QLabel(" Generate: "), self.mode_combo), labelled(self.strength_label, self.strength_spin),
                  self.only_masked_check, labelled(self.padding_label, self.padding_spin),
                  labelled(self.blur_label, self.blur_spin)):
            self.bar.addWidget(w)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.bar)

        p = params
        self.mode_combo.currentIndexChanged.connect(self._on_mode_combo_changed)
        canvas.modes_changed.connect(self._on_canvas_modes_changed)
        self.strength_spin.valueChanged.connect(lambda v: p.set("strength", v))
        self.only_masked_check.toggled.connect(lambda v: p.set("only_masked", v))
        self.padding_spin.valueChanged.connect(lambda v: p.set("mask_padding", v))
        self.blur_spin.valueChanged.connect(lambda v: p.set("mask_blur", v))
        for signal in (p.edit_mode_changed, p.strength_changed, p.only_masked_changed, p.mask_padding_changed,
                       p.mask_blur_changed, p.width_changed, p.height_changed):
            signal.connect(lambda _v: self.refresh())
        doc.document_replaced.connect(self.refresh)
        # Edit with words says whether a mask limits it: asked once a stroke is done, not on every dab.
        doc.undo_stack.indexChanged.connect(lambda _i: self.refresh() if p.edit_mode == "instruct" else None)
        self.refresh()

    def _fill_modes(self) -> None:
        """The modes the canvas offers (Edit with words only for an instruction-edit model)."""
        self.mode_combo.blockSignals(True)
        self.mode_combo.clear()
        for key in self._canvas.offered_modes():
            self.mode_combo.addItem(MODE_LABELS[key], key)
        words = self.mode_combo.findData("instruct")
        if words >= 0:
            self.mode_combo.setItemData(words, "The prompt says what to change in the canvas image (“make the sky "
                                        "stormy”); a painted mask keeps the change inside it",
                                        Qt.ItemDataRole.ToolTipRole)
        self.mode_combo.blockSignals(False)

    def _on_mode_combo_changed(self, _index: int) -> None:
        if self.mode_combo.currentData() is not None:
            self._params.set("edit_mode", self.mode_combo.currentData())

    def _on_canvas_modes_changed(self) -> None:
        self._fill_modes()
        self.refresh()

    def refresh(self) -> None:
        p, doc = self._params, self._doc
        self.mode_combo.blockSignals(True)
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(p.edit_mode))
        self.mode_combo.blockSignals(False)
        self.strength_spin.setValue(p.strength)
        self.only_masked_check.setChecked(p.only_masked)
        self.padding_spin.setValue(p.mask_padding)
        self.blur_spin.setValue(p.mask_blur)
        editing = p.edit_mode != "txt2img"
        inpaint = p.edit_mode == "inpaint"
        words = p.edit_mode == "instruct"
        for w in (self.strength_label, self.strength_spin):
            w.setEnabled(editing and not words)  # an instruction says how much changes
        self.only_masked_check.setEnabled(inpaint)
        for w in (self.blur_label, self.blur_spin):
            w.setEnabled(inpaint or words)  # Edit with words over a painted mask blends its seam too
        for w in (self.padding_label, self.padding_spin):
            w.setEnabled(inpaint and p.only_masked)
        if not editing:
            text = f"makes a new {p.width}×{p.height} image"
        elif not doc.has_image:
            text = "open or paste an image to edit"
        elif words:
            where = "the masked part of the" if doc.has_mask() else "the whole"
            text = f"edits {where} {doc.width}×{doc.height} canvas as the prompt says"
        elif inpaint and p.only_masked:
            text = f"works at {p.width}×{p.height} around the mask, pasted back"
        else:
            w, h = imageprep.padded_size(doc.width, doc.height)
            pad = "" if (w, h) == (doc.width, doc.height) else f" (padded to {w}×{h}, cropped back)"
            text = f"works on the whole {doc.width}×{doc.height} canvas{pad}"
        source = {"clipboard": "the pasted image"}.get(doc.source, doc.source)
        editing_what = f"Editing {source}: " if editing and doc.has_image and source else ""
        self.hint.setText(f"{editing_what}Generate {text}.")
        self.mode_combo.setToolTip(f"What Generate does now: {text}. New image makes one from the prompt; Image to "
                                   "image redoes the whole canvas; Inpaint regenerates the masked area (Extend… first "
                                   "to outpaint)" + ("; Edit with words changes what the prompt says"
                                                     if self._canvas.words_offered else ""))
        self.hint_changed.emit(self.hint.text())


class CandidateBarWidget(QWidget):
    """Shown while results wait over the canvas: ‹ n of N ›, before/after, accept, discard."""

    accept_requested = Signal()
    discard_requested = Signal()

    def __init__(self, doc: CanvasDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("CandidateBarWidget")
        self._doc = doc
        self.setAutoFillBackground(True)
        self.label = QLabel()
        self.prev_button = QToolButton(text="‹")
        self.prev_button.setToolTip("Previous result (Left)")
        self.next_button = QToolButton(text="›")
        self.next_button.setToolTip("Next result (Right)")
        self.compare_button = QPushButton("Before")
        self.compare_button.setCheckable(True)
        self.compare_button.setToolTip("Show the canvas as it was, to compare (C)")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setObjectName("AcceptButton")
        self.accept_button.setToolTip("Make this result the canvas; Ctrl+Z undoes it (Enter)")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Drop the results and keep the canvas as it is (Backspace); they go to the gallery's trash")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        for w in (self.prev_button, self.label, self.next_button):
            row.addWidget(w)
        row.addStretch(1)
        for w in (self.compare_button, self.accept_button, self.discard_button):
            row.addWidget(w)
        self.prev_button.clicked.connect(lambda: doc.select_candidate(doc.candidate_index - 1))
        self.next_button.clicked.connect(lambda: doc.select_candidate(doc.candidate_index + 1))
        self.compare_button.toggled.connect(doc.set_show_before)
        self.accept_button.clicked.connect(self.accept_requested)
        self.discard_button.clicked.connect(self.discard_requested)
        doc.candidates_changed.connect(self._on_doc_candidates_changed)
        self._on_doc_candidates_changed()

    def _on_doc_candidates_changed(self) -> None:
        doc = self._doc
        n = len(doc.candidates)
        self.setVisible(n > 0)
        if not n:
            return
        cand = doc.current_candidate()
        state = "before (the canvas as it is)" if doc.show_before else "after"
        self.label.setText(f"Result {doc.candidate_index + 1} of {n} · seed {cand.seed} · showing {state}")
        self.prev_button.setEnabled(n > 1)
        self.next_button.setEnabled(n > 1)
        self.compare_button.blockSignals(True)
        self.compare_button.setChecked(doc.show_before)
        self.compare_button.blockSignals(False)
        self.label.setAlignment(Qt.AlignmentFlag.AlignVCenter)
