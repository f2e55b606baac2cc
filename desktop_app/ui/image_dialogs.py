"""The Variations… and Upscale… dialogs: a few settings, then one queued job (state.image_jobs)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QRadioButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.families import kind_label, makes_variations
from desktop_app.state.image_jobs import MAX_VARIATIONS, TILE_CHOICES, ImageJobs, ImageSource

DETAIL_TILES = (("1024 px", 1024), ("768 px", 768), ("512 px (least memory)", 512), ("2048 px", 2048))
from engine.api import MAX_SIZE, PLAIN_UPSCALER
from engine.detail_upscale import DEFAULT_STRENGTH, DEFAULT_TILE
from engine.variations import STRENGTHS


class VariationsDialog(QDialog):
    """Count, strength (Subtle / Strong / a custom amount), model and prompt for Variations."""

    def __init__(self, jobs: ImageJobs, source: ImageSource, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("VariationsDialog")
        self.setWindowTitle("Variations")
        self._jobs, self._source = jobs, source
        self.heading = QLabel(f"New versions of <b>{_escape(source.name)}</b> ({source.width}×{source.height}), "
                              "each from a new seed.")
        self.heading.setWordWrap(True)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, MAX_VARIATIONS)
        self.count_spin.setValue(4)
        self.count_spin.setToolTip(f"How many variations to make (1–{MAX_VARIATIONS}), one after another")
        self.subtle_radio = QRadioButton("Subtle")
        self.subtle_radio.setToolTip("Keeps the composition and colours; changes details")
        self.strong_radio = QRadioButton("Strong")
        self.strong_radio.setToolTip("Keeps the layout; redraws much more")
        self.custom_radio = QRadioButton("Custom")
        self.strength_group = QButtonGroup(self)
        for b in (self.subtle_radio, self.strong_radio, self.custom_radio):
            self.strength_group.addButton(b)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(5, 100)
        self.strength_slider.setToolTip("How much may change: low keeps the image, 100% redraws it completely")
        self.strength_value = QLabel()
        self.strength_value.setMinimumWidth(40)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The model that draws the variations (default: the image's own, if you have it)")
        for m in jobs.generators():
            kind = kind_label(m)
            self.model_combo.addItem(m.name + (f"  ({kind})" if kind else ""), m.path)
        default = jobs.default_model(source)
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(default)))
        self.prompt_edit = QPlainTextEdit(source.prompt)
        self.prompt_edit.setObjectName("VariationsPrompt")
        self.prompt_edit.setPlaceholderText("The prompt (default: the one stored in the image)")
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setMaximumHeight(72)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(placeholder-text);")

        strength_row = QHBoxLayout()
        for b in (self.subtle_radio, self.strong_radio, self.custom_radio):
            strength_row.addWidget(b)
        strength_row.addStretch(1)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.strength_slider, 1)
        slider_row.addWidget(self.strength_value)
        form = QFormLayout()
        form.addRow("Count", self.count_spin)
        form.addRow("Strength", strength_row)
        form.addRow("", slider_row)
        form.addRow("Model", self.model_combo)
        form.addRow("Prompt", self.prompt_edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.make_button = self.buttons.addButton("Make variations", QDialogButtonBox.ButtonRole.AcceptRole)
        self.make_button.setDefault(True)
        box = QVBoxLayout(self)
        box.addWidget(self.heading)
        box.addLayout(form)
        box.addWidget(self.note)
        box.addWidget(self.buttons)
        self.resize(460, self.sizeHint().height())

        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.subtle_radio.toggled.connect(lambda on: on and self.strength_slider.setValue(round(STRENGTHS["subtle"] * 100)))
        self.strong_radio.toggled.connect(lambda on: on and self.strength_slider.setValue(round(STRENGTHS["strong"] * 100)))
        self.strength_slider.valueChanged.connect(self._on_slider_changed)
        self.model_combo.currentIndexChanged.connect(lambda _i: self._update())
        self.subtle_radio.setChecked(True)
        self._update()

    def _on_slider_changed(self, value: int) -> None:
        self.strength_value.setText(f"{value}%")
        presets = {round(v * 100): k for k, v in STRENGTHS.items()}
        if presets.get(value) == "subtle":
            self.subtle_radio.setChecked(True)
        elif presets.get(value) == "strong":
            self.strong_radio.setChecked(True)
        else:
            self.custom_radio.setChecked(True)

    def _update(self) -> None:
        has_model = self.model_combo.count() > 0
        self.make_button.setEnabled(has_model)
        info = self._jobs.catalog.find(self.model_combo.currentData() or "")
        if not has_model:
            self.note.setText("There is no model to draw with: add a folder of models first.")
        elif makes_variations(info):
            self.note.setText("Stable unCLIP draws from the image itself (its CLIP image embedding): "
                              "Subtle adds little noise to it, Strong more.")
        else:
            steps = (f"{self._source.steps} steps ({self._source.steps_from})" if self._source.steps
                     else "the model's usual steps (none are stored in the image)")
            self.note.setText("Each variation is image-to-image from this image with a new seed, "
                              f"{steps}; the prompt and CFG stored in the image are reused.")

    @property
    def strength(self) -> float:
        return self.strength_slider.value() / 100

    @property
    def model(self) -> str:
        return self.model_combo.currentData() or ""

    @property
    def prompt(self) -> str | None:
        """None when the stored prompt was left as it is (its negative prompt is then kept too)."""
        text = self.prompt_edit.toPlainText()
        return None if text == self._source.prompt else text

    def submit(self):
        """Queue the job with the chosen settings (the dialog's Accept)."""
        return self._jobs.make_variations(self._source, self.model, self.count_spin.value(), self.strength, self.prompt)


class UpscaleDialog(QDialog):
    """Scale, upscaler model and tile size for Upscale; says where upscalers go when there are none."""

    def __init__(self, jobs: ImageJobs, source: ImageSource, parent: QWidget | None = None,
                 models_folder: str = ""):
        super().__init__(parent)
        self.setObjectName("UpscaleDialog")
        self.setWindowTitle("Upscale")
        self._jobs, self._source = jobs, source
        self.heading = QLabel(f"Enlarge <b>{_escape(source.name)}</b> ({source.width}×{source.height}).")
        self.heading.setWordWrap(True)
        self.x2_radio = QRadioButton("x2")
        self.x4_radio = QRadioButton("x4")
        self.scale_group = QButtonGroup(self)
        self.scale_group.addButton(self.x2_radio, 2)
        self.scale_group.addButton(self.x4_radio, 4)
        self.x4_radio.setChecked(True)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("GAN upscalers (ESRGAN, Real-ESRGAN, SwinIR… as .safetensors or .pth) run tile "
                                    "by tile; a diffusion x4 upscaler redraws details from the prompt (slower)")
        self.tile_combo = QComboBox()
        # With detail: enlarge, then redraw overlapping tiles with a generator and the image's prompt.
        self.detail_check = QCheckBox("With detail (any model)")
        self.detail_check.setToolTip("Enlarge, then redraw the image tile by tile with a model and the image's "
                                     "prompt (image to image), so the large image gains new detail; tiles are "
                                     "cross-faded and memory stays bounded by the tile size")
        self.detail_model_combo = QComboBox()
        self.detail_model_combo.setToolTip("The model that redraws the detail (any model that runs image to image)")
        for m in jobs.detail_models():
            self.detail_model_combo.addItem(f"{m.name}  ({kind_label(m)})" if kind_label(m) else m.name, m.path)
        own = self.detail_model_combo.findData(jobs.default_model(source))
        self.detail_model_combo.setCurrentIndex(max(own, 0))
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.05, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setValue(DEFAULT_STRENGTH)
        self.strength_spin.setToolTip("How much each tile is redrawn: 0.2–0.4 adds detail and keeps the picture")
        self.size_label = QLabel()
        self.empty_label = QLabel(
            "No upscaler in your model folders yet. Put upscaler weights (for example RealESRGAN_x4plus"
            f".safetensors or .pth) in {models_folder or 'a model folder'}, or a diffusers "
            "stable-diffusion-x4-upscaler folder, then rescan (F5).<br>To try it with a tiny test upscaler, "
            "put one in a model folder (FOLDER) with:<br><code>easel make-test-model FOLDER --family realesrgan-compact</code>")
        self.empty_label.setObjectName("NoUpscalers")
        self.empty_label.setWordWrap(True)
        self.empty_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(placeholder-text);")

        scale_row = QHBoxLayout()
        scale_row.addWidget(self.x2_radio)
        scale_row.addWidget(self.x4_radio)
        scale_row.addStretch(1)
        form = QFormLayout()
        form.addRow("Scale", scale_row)
        form.addRow("", self.detail_check)
        form.addRow("Upscaler", self.model_combo)
        form.addRow("Redraw with", self.detail_model_combo)
        form.addRow("Strength", self.strength_spin)
        form.addRow("Tile size", self.tile_combo)
        form.addRow("Result", self.size_label)
        self._form = form
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.upscale_button = self.buttons.addButton("Upscale", QDialogButtonBox.ButtonRole.AcceptRole)
        self.upscale_button.setDefault(True)
        box = QVBoxLayout(self)
        box.addWidget(self.heading)
        box.addWidget(self.empty_label)
        box.addLayout(form)
        box.addWidget(self.note)
        box.addWidget(self.buttons)

        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.scale_group.idToggled.connect(lambda _id, _on: self._update())
        self.model_combo.currentIndexChanged.connect(lambda _i: self._update())
        self.detail_check.toggled.connect(lambda _on: self._fill())
        self.detail_model_combo.currentIndexChanged.connect(lambda _i: self._update())
        self._fill()
        self.layout().activate()
        # Word-wrapped labels need the height for this width, which the plain size hint does not give.
        self.resize(480, max(self.minimumSizeHint().height(), self.layout().totalHeightForWidth(480)))

    @property
    def scale(self) -> int:
        return self.scale_group.checkedId()

    @property
    def model(self) -> str:
        return self.model_combo.currentData() or ""

    @property
    def tile(self) -> int:
        return int(self.tile_combo.currentData())

    @property
    def detail(self) -> bool:
        return self.detail_check.isChecked()

    def _fill(self) -> None:
        """The upscalers and tile sizes for the chosen way (with detail: a plain resize or a GAN first)."""
        detail = self.detail
        for combo, items in (
            (self.model_combo, ([("Plain resize (Lanczos)", PLAIN_UPSCALER)] if detail else [])
             + [(f"{u.name}  ({kind_label(u)})", u.path)
                for u in (self._jobs.gan_upscalers() if detail else self._jobs.upscalers())]),
            (self.tile_combo, DETAIL_TILES if detail else TILE_CHOICES),
        ):
            combo.blockSignals(True)
            combo.clear()
            for label, data in items:
                combo.addItem(label, data)
            combo.blockSignals(False)
        for widget in (self.detail_model_combo, self.strength_spin):
            self._form.setRowVisible(widget, detail)
        if detail:
            self.tile_combo.setCurrentIndex(max(0, self.tile_combo.findData(DEFAULT_TILE)))
        self._update()
        if self.isVisible():
            self.adjustSize()

    def _update(self) -> None:
        if self.detail:
            return self._update_detail()
        has = self.model_combo.count() > 0
        self.empty_label.setVisible(not has)
        for w in (self.model_combo, self.x2_radio, self.x4_radio, self.tile_combo):
            w.setEnabled(has)
        info = self._jobs.catalog_upscaler(self.model) if has else None
        diffusion = info is not None and info.format == "diffusers"
        if diffusion:
            self.x4_radio.setChecked(True)
        self.x2_radio.setEnabled(has and not diffusion)
        self.tile_combo.setEnabled(has and not diffusion)
        w, h = self._source.width * self.scale, self._source.height * self.scale
        self.size_label.setText(f"{w} × {h} px")
        self.tile_combo.setToolTip(
            "A diffusion upscaler works in tiles sized by the memory preset (256 px of the image with Fast, "
            "128 px with Low)" if diffusion else
            "Large images are upscaled in overlapping tiles, blended seamlessly, so memory stays bounded; "
            "Auto uses 512 px tiles")
        ok = has
        if diffusion and max(w, h) > MAX_SIZE:
            self.note.setText(f"A diffusion x4 upscaler makes images of at most {MAX_SIZE} px a side: choose a GAN "
                              "upscaler for this image, or crop it first.")
            ok = False
        elif diffusion:
            self.note.setText("A diffusion x4 upscaler redraws detail guided by the image's prompt; it takes "
                              "longer than a GAN upscaler.")
        elif has:
            self.note.setText("The result is saved in the gallery with the source's settings; you can then "
                              "compare before and after.")
        else:
            self.note.setText("")
        self.upscale_button.setEnabled(ok)

    def _update_detail(self) -> None:
        self.empty_label.setVisible(False)
        for w in (self.model_combo, self.x2_radio, self.x4_radio, self.tile_combo):
            w.setEnabled(True)
        w, h = self._source.width * self.scale, self._source.height * self.scale
        self.size_label.setText(f"{w} × {h} px")
        self.tile_combo.setToolTip("The image is redrawn in overlapping tiles of this size, cross-faded; memory "
                                   "is bounded by the tile size (use the model's own size, e.g. 1024 px for SDXL)")
        ok = self.detail_model_combo.count() > 0
        if not ok:
            self.note.setText("No model that runs image to image is in your model folders: add one to redraw detail.")
        elif max(w, h) > MAX_SIZE:
            self.note.setText(f"With detail the result is at most {MAX_SIZE} px a side: choose x2, or crop the image first.")
            ok = False
        else:
            self.note.setText("Enlarged, then redrawn tile by tile with the image's prompt; saved in the gallery with "
                              "settings that say how (upscaler, strength, tile size).")
        self.upscale_button.setEnabled(ok)

    def submit(self):
        """Queue the upscale (the dialog's Accept)."""
        if self.detail:
            return self._jobs.detail_upscale(self._source, self.detail_model_combo.currentData() or "", self.model,
                                             self.scale, self.strength_spin.value(), self.tile)
        return self._jobs.upscale(self._source, self.model, self.scale, self.tile)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
