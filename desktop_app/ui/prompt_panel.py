"""The prompt panel: prompt, negative prompt, model, size, steps, CFG, sampler, seed, batch, memory."""

from __future__ import annotations

import re

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state import families
from desktop_app.state.actions import StudioActions
from desktop_app.state.params import SIZE_PRESETS, GenerationParameters
from engine.api import MAX_BATCH, MAX_SEED, MAX_SIZE, MAX_STEPS, MEMORY_PRESETS, MIN_SIZE, MIN_STEPS, SAMPLERS, SPEEDS, ModelInfo
from engine.api import LATENT_UPSCALERS, MAX_HIRES_SCALE, PLAIN_UPSCALER

MEMORY_PRESET_HELP = {
    "auto": "Choose from the device's free memory",
    "fast": "Everything on the device; needs the most memory",
    "balanced": "Slices attention and VAE to save memory",
    "low": "Moves idle parts of the model off the device",
    "minimal": "Moves each layer in turn; slowest, least memory",
}
SPEED_HELP = {
    "standard": "The model as it is",
    "fast": "Compiled for this device the first time (a minute or more, once); the same image, made faster",
    "draft": "Reuses work between steps: quicker, a little rougher; good for trying ideas",
}


PROMPT_PLACEHOLDER = "Describe the image… (Ctrl+Enter to generate)"
# Edit with words: the prompt is an instruction to an instruction-edit model, not a description.
INSTRUCTION_PLACEHOLDER = "Say what to change in the canvas image, e.g. “make the sky stormy” (Ctrl+Enter to edit)"


class PromptEdit(QPlainTextEdit):
    """A multi-line prompt box; Tab moves focus on (not a tab character), Ctrl+Enter is left to the window."""

    def __init__(self, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)


class CheckedSpinBox(QSpinBox):
    """A whole-number box that only takes the values it offers: from its minimum to its maximum in
    steps of ``multiple``. A value typed outside them is brought to the nearest allowed one when
    editing ends, visibly (the box shows it) and said in ``corrected`` — never silently."""

    corrected = Signal(str)  # the line saying what was typed and what is used instead

    def __init__(self, name: str, lo: int, hi: int, multiple: int = 1, parent: QWidget | None = None):
        super().__init__(parent)
        self._name, self._multiple = name, multiple
        self.setRange(lo, hi)
        self.setSingleStep(multiple)
        self.setCorrectionMode(QSpinBox.CorrectionMode.CorrectToNearestValue)

    @property
    def allowed(self) -> str:
        """The allowed values in words: "64–4096, multiples of 8"."""
        rule = f", multiples of {self._multiple}" if self._multiple > 1 else ""
        return f"{self.minimum()}–{self.maximum()}{rule}"

    def validate(self, text: str, pos: int):  # noqa: D401 (Qt name)
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and self.valueFromText(text) % self._multiple:
            return QValidator.State.Intermediate, text, pos
        number = text.removeprefix(self.prefix()).removesuffix(self.suffix()).strip()
        if state == QValidator.State.Invalid and number.isdigit() and len(number) <= 9:
            return QValidator.State.Intermediate, text, pos  # too big: brought in (and said) when done
        return state, text, pos

    def fixup(self, text: str) -> str:
        digits = re.sub(r"\D", "", text)
        if not digits:
            return text
        typed = int(digits)
        m = self._multiple
        lo, hi = -(-self.minimum() // m) * m, self.maximum() // m * m
        value = min(max(int(round(typed / m)) * m, lo), hi)
        why = f"not a multiple of {m}" if typed % m and lo <= typed <= hi else f"outside {self.allowed}"
        self.corrected.emit(f"{self._name} {typed} is {why}: using {value}.")
        return f"{self.prefix()}{self.textFromValue(value)}{self.suffix()}"


class PromptPanel(QWidget):
    add_folder_requested = Signal()

    def __init__(self, params: GenerationParameters, actions: StudioActions, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("PromptPanel")
        self._params = params
        self._actions = actions

        self.prompt_edit = PromptEdit(PROMPT_PLACEHOLDER)
        self.prompt_edit.setToolTip("What to make. Several lines are fine. Ctrl+Enter generates (Ctrl+L to come back here).")
        self.prompt_edit.setAccessibleName("Prompt")
        self.negative_edit = PromptEdit("What to avoid (optional)")
        self.negative_edit.setToolTip("Negative prompt: what the image should not contain.")
        self.negative_edit.setAccessibleName("Negative prompt")
        self.negative_edit.setMaximumHeight(70)

        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The model that makes the image: found in your model folders (F5 rescans).")
        self.model_combo.setAccessibleName("Model")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(8)
        self.model_kind_label = QLabel()
        self.model_kind_label.setObjectName("ModelKind")
        self.model_kind_label.setToolTip("What kind of model this is; settings it does not take are greyed out")
        self.model_kind_label.setStyleSheet("color: palette(placeholder-text);")
        self._tips: dict[QWidget, str] = {}  # each control's own tooltip, while a model disables it
        self.add_folder_button = QToolButton()
        self.add_folder_button.setText("Add folder…")
        self.add_folder_button.setToolTip("Add a folder of models (.safetensors files or diffusers folders) (Ctrl+Shift+O)")

        self.size_combo = QComboBox()
        self._size_presets: tuple[tuple[int, int], ...] = ()
        self._fill_size_combo(SIZE_PRESETS)
        self.size_combo.setToolTip("Image size presets; choose Custom or edit width and height for any multiple of 8.")
        self.width_spin = _spin(MIN_SIZE, MAX_SIZE, 8, "Width in pixels (a multiple of 8)", " px", "Width")
        self.height_spin = _spin(MIN_SIZE, MAX_SIZE, 8, "Height in pixels (a multiple of 8)", " px", "Height")
        self.steps_spin = _spin(MIN_STEPS, MAX_STEPS, 1, "Denoising steps: more is slower and usually finer (20–30 is typical)",
                                name="Steps")
        # What the number boxes allow, always on screen; a typed value that was brought in says so here.
        self.range_hint = QLabel()
        self.range_hint.setObjectName("RangeHint")
        self.range_hint.setWordWrap(True)
        self.range_hint.setStyleSheet("color: palette(placeholder-text);")
        self.cfg_spin = QDoubleSpinBox()
        self.cfg_spin.setRange(0.0, 30.0)
        self.cfg_spin.setSingleStep(0.5)
        self.cfg_spin.setDecimals(1)
        self.cfg_spin.setToolTip("CFG scale: how closely to follow the prompt (5–9 is typical)")
        self.sampler_combo = QComboBox()
        self.sampler_combo.addItems(SAMPLERS)
        self.sampler_combo.setToolTip("The sampler (scheduler) used for denoising")

        self.seed_mode_combo = QComboBox()
        self.seed_mode_combo.addItem("Random", "random")
        self.seed_mode_combo.addItem("Fixed", "fixed")
        self.seed_mode_combo.setToolTip("Random: a new seed each time. Fixed: the seed on the right, for repeatable images.")
        self.seed_edit = QLineEdit()
        self.seed_edit.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,20}")))
        self.seed_edit.setToolTip(f"The seed (0 to {MAX_SEED}); typing one switches to Fixed")
        self.seed_edit.setAccessibleName("Seed")
        self.reuse_seed_button = QToolButton()
        self.reuse_seed_button.setText("Reuse last")
        self.reuse_seed_button.setToolTip("Use the seed of the last image again (Ctrl+R)")
        self.reuse_seed_button.setEnabled(False)

        self.batch_spin = _spin(1, MAX_BATCH, 1, "How many images to make, one after another (seed, seed+1, …)",
                                name="Batch")
        self.memory_combo = QComboBox()
        for preset in MEMORY_PRESETS:
            self.memory_combo.addItem(preset.capitalize(), preset)
            self.memory_combo.setItemData(self.memory_combo.count() - 1, MEMORY_PRESET_HELP[preset], Qt.ItemDataRole.ToolTipRole)
        self.memory_combo.setToolTip("Memory preset: trade speed for memory on small GPUs")
        self.speed_combo = QComboBox()
        for speed in SPEEDS:
            self.speed_combo.addItem(speed.capitalize(), speed)
            self.speed_combo.setItemData(self.speed_combo.count() - 1, SPEED_HELP[speed], Qt.ItemDataRole.ToolTipRole)
        self.speed_combo.setToolTip("Speed: Fast compiles the model for this device once; Draft trades a little quality")

        # The hires fix: one compact row pair (on/off + factor + upscaler; second-pass steps + denoise).
        self.hires_check = QCheckBox("Hires fix")
        self.hires_check.setToolTip("Hires fix: make the image at the size above, enlarge it, then refine it at the "
                                    "large size with image to image (new images only), as one job")
        self.hires_scale_spin = QDoubleSpinBox()
        self.hires_scale_spin.setRange(1.0, MAX_HIRES_SCALE)
        self.hires_scale_spin.setSingleStep(0.25)
        self.hires_scale_spin.setDecimals(2)
        self.hires_scale_spin.setPrefix("×")
        self.hires_scale_spin.setAccessibleName("Upscale by")
        self.hires_scale_spin.setToolTip("Upscale by: how many times larger the final image is (A1111's Hires upscale)")
        self.upscaler_combo = QComboBox()
        self.upscaler_combo.setAccessibleName("Hires upscaler")
        self.upscaler_combo.setToolTip("What enlarges the first pass: a plain resize (Lanczos), the first pass's "
                                       "latents (Latent: SD and SDXL), or a GAN upscaler from your model folders (sharper)")
        self.upscaler_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.upscaler_combo.setMinimumContentsLength(6)
        self.hires_steps_spin = _spin(0, MAX_STEPS, 1, "Hires steps: the second pass's steps (Steps =: as many as Steps)", name="Hires steps")
        self.hires_steps_spin.setPrefix("Steps ")
        self.hires_steps_spin.setSpecialValueText("Steps =")
        self.hires_steps_spin.setAccessibleName("Hires steps")
        self.hires_strength_spin = QDoubleSpinBox()
        self.hires_strength_spin.setRange(0.01, 1.0)
        self.hires_strength_spin.setSingleStep(0.05)
        self.hires_strength_spin.setDecimals(2)
        self.hires_strength_spin.setPrefix("Denoise ")
        self.hires_strength_spin.setAccessibleName("Denoise")
        self.hires_strength_spin.setToolTip("Denoising strength of the second pass: how much it redraws (0.3–0.6 is typical)")

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("GenerateButton")
        self.generate_button.setToolTip("Generate (Ctrl+Enter). While busy, this adds the job to the queue.")
        self.blocked_label = QLabel()
        self.blocked_label.setObjectName("BlockedReason")
        self.blocked_label.setWordWrap(True)

        self._layout()
        self._bind()
        self._set_tab_order()

    # -- layout -------------------------------------------------------------------------------

    def _layout(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(8, 8, 8, 8)
        root.addWidget(_caption("Prompt"))
        root.addWidget(self.prompt_edit, 3)
        from desktop_app.ui.models_panel import LoraPickerWidget

        self.lora_picker = LoraPickerWidget(self._actions)
        root.addWidget(self.lora_picker, 0, Qt.AlignmentFlag.AlignLeft)
        root.addWidget(_caption("Negative prompt"))
        root.addWidget(self.negative_edit, 1)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.add_folder_button)
        form.addRow("Model", model_row)
        form.addRow("", self.model_kind_label)
        form.addRow("Size", self.size_combo)
        wh = QHBoxLayout()
        wh.addWidget(self.width_spin)
        wh.addWidget(QLabel("×"))
        wh.addWidget(self.height_spin)
        form.addRow("", wh)
        form.addRow("", self.range_hint)
        form.addRow("Steps", self.steps_spin)
        form.addRow("CFG scale", self.cfg_spin)
        form.addRow("Sampler", self.sampler_combo)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_mode_combo)
        seed_row.addWidget(self.seed_edit, 1)
        seed_row.addWidget(self.reuse_seed_button)
        form.addRow("Seed", seed_row)
        batch_row = QHBoxLayout()
        batch_row.addWidget(self.batch_spin, 1)
        batch_row.addWidget(self.hires_check)
        form.addRow("Batch", batch_row)
        form.addRow("Memory", self.memory_combo)
        form.addRow("Speed", self.speed_combo)
        # The hires fix's settings show while it is on (the panel stays short at 1280×800).
        self.hires_row, self.hires_second_row = QHBoxLayout(), QHBoxLayout()
        self.hires_row.addWidget(self.hires_scale_spin)
        self.hires_row.addWidget(self.upscaler_combo, 1)
        self.hires_second_row.addWidget(self.hires_steps_spin, 1)
        self.hires_second_row.addWidget(self.hires_strength_spin, 1)
        form.addRow("Hires", self.hires_row)
        form.addRow("", self.hires_second_row)
        self._form = form
        root.addLayout(form)
        root.addWidget(self.generate_button)
        root.addWidget(self.blocked_label)

    def _set_tab_order(self) -> None:
        order = [
            self.prompt_edit, self.negative_edit, self.model_combo, self.add_folder_button, self.size_combo,
            self.width_spin, self.height_spin, self.steps_spin, self.cfg_spin, self.sampler_combo,
            self.seed_mode_combo, self.seed_edit, self.reuse_seed_button, self.batch_spin, self.memory_combo,
            self.speed_combo, self.hires_check, self.hires_scale_spin, self.upscaler_combo, self.hires_steps_spin,
            self.hires_strength_spin, self.generate_button,
        ]
        for a, b in zip(order, order[1:]):
            QWidget.setTabOrder(a, b)

    # -- binding ------------------------------------------------------------------------------

    def _bind(self) -> None:
        p, a = self._params, self._actions
        self.prompt_edit.textChanged.connect(lambda: p.set("prompt", self.prompt_edit.toPlainText()))
        self.negative_edit.textChanged.connect(lambda: p.set("negative_prompt", self.negative_edit.toPlainText()))
        p.prompt_changed.connect(lambda t: _set_text(self.prompt_edit, t))
        p.negative_prompt_changed.connect(lambda t: _set_text(self.negative_edit, t))

        self.model_combo.currentIndexChanged.connect(self._on_model_combo_changed)
        p.model_changed.connect(self._on_params_model_changed)
        a.catalog.models_changed.connect(self._on_catalog_models_changed)
        a.catalog.scanning_changed.connect(self._on_catalog_scanning_changed)
        self.add_folder_button.clicked.connect(self.add_folder_requested)

        self.size_combo.activated.connect(self._on_size_combo_activated)
        self.width_spin.valueChanged.connect(lambda v: p.set("width", v))
        self.height_spin.valueChanged.connect(lambda v: p.set("height", v))
        p.width_changed.connect(lambda v: (self.width_spin.setValue(v), self._sync_size_combo()))
        p.height_changed.connect(lambda v: (self.height_spin.setValue(v), self._sync_size_combo()))
        for spin in (self.width_spin, self.height_spin, self.steps_spin, self.batch_spin):
            spin.corrected.connect(self._on_spin_corrected)
            spin.lineEdit().textEdited.connect(lambda _t: self._show_ranges())  # typing again: the note goes
        self.steps_spin.valueChanged.connect(lambda v: p.set("steps", v))
        p.steps_changed.connect(self._on_params_steps_changed)
        self.cfg_spin.valueChanged.connect(lambda v: p.set("guidance_scale", v))
        p.guidance_scale_changed.connect(self.cfg_spin.setValue)
        self.sampler_combo.currentTextChanged.connect(lambda t: p.set("sampler", t))
        p.sampler_changed.connect(self.sampler_combo.setCurrentText)

        self.seed_mode_combo.currentIndexChanged.connect(lambda _i: p.set("seed_mode", self.seed_mode_combo.currentData()))
        p.seed_mode_changed.connect(self._on_params_seed_mode_changed)
        self.seed_edit.textEdited.connect(self._on_seed_edited)
        p.seed_changed.connect(lambda s: self.seed_edit.setText(str(s)) if self.seed_edit.text() != str(s) else None)
        p.last_seed_changed.connect(self._on_params_last_seed_changed)
        self.reuse_seed_button.clicked.connect(a.reuse_last_seed)

        self.batch_spin.valueChanged.connect(lambda v: p.set("batch_count", v))
        p.batch_count_changed.connect(self.batch_spin.setValue)
        self.memory_combo.currentIndexChanged.connect(lambda _i: p.set("memory_preset", self.memory_combo.currentData()))
        p.memory_preset_changed.connect(lambda m: self.memory_combo.setCurrentIndex(self.memory_combo.findData(m)))
        self.speed_combo.currentIndexChanged.connect(lambda _i: p.set("speed", self.speed_combo.currentData()))
        p.speed_changed.connect(lambda s: self.speed_combo.setCurrentIndex(self.speed_combo.findData(s)))

        self.hires_check.toggled.connect(lambda on: p.set("hires", on))
        p.hires_changed.connect(lambda on: (self.hires_check.setChecked(on), self._apply_hires_rules()))
        self.hires_scale_spin.valueChanged.connect(lambda v: p.set("hires_scale", v))
        p.hires_scale_changed.connect(self.hires_scale_spin.setValue)
        self.hires_steps_spin.valueChanged.connect(lambda v: p.set("hires_steps", v))
        p.hires_steps_changed.connect(self.hires_steps_spin.setValue)
        self.hires_strength_spin.valueChanged.connect(lambda v: p.set("hires_strength", v))
        p.hires_strength_changed.connect(self.hires_strength_spin.setValue)
        self.upscaler_combo.currentIndexChanged.connect(self._on_upscaler_combo_changed)
        p.upscaler_changed.connect(lambda _u: self._fill_upscalers())
        a.catalog.entries_changed.connect(lambda _e: self._fill_upscalers())
        p.edit_mode_changed.connect(lambda _m: self._apply_hires_rules())

        p.model_changed.connect(lambda _m: self._apply_model_rules())
        p.edit_mode_changed.connect(self._on_params_edit_mode_changed)
        self.generate_button.clicked.connect(a.generate)
        a.generate_enabled_changed.connect(self._on_actions_generate_enabled_changed)
        self.refresh_from_state()

    def refresh_from_state(self) -> None:
        """Show every parameter's current value (after settings are loaded)."""
        p = self._params
        _set_text(self.prompt_edit, p.prompt)
        _set_text(self.negative_edit, p.negative_prompt)
        self.width_spin.setValue(p.width)
        self.height_spin.setValue(p.height)
        self._sync_size_combo()
        self.steps_spin.setValue(p.steps)
        self.cfg_spin.setValue(p.guidance_scale)
        self.sampler_combo.setCurrentText(p.sampler)
        self._on_params_seed_mode_changed(p.seed_mode)
        self.seed_edit.setText(str(p.seed))
        self.batch_spin.setValue(p.batch_count)
        self.memory_combo.setCurrentIndex(self.memory_combo.findData(p.memory_preset))
        self.speed_combo.setCurrentIndex(self.speed_combo.findData(p.speed))
        self.hires_check.setChecked(p.hires)
        self.hires_scale_spin.setValue(p.hires_scale)
        self.hires_steps_spin.setValue(p.hires_steps)
        self.hires_strength_spin.setValue(p.hires_strength)
        self._fill_upscalers()
        self._on_catalog_models_changed(self._actions.catalog.models)
        self._on_params_edit_mode_changed(p.edit_mode)
        self._on_actions_generate_enabled_changed(self._actions.generate_enabled, self._actions.generate_blocked_reason)

    _correction = ""

    def _on_params_edit_mode_changed(self, mode: str) -> None:
        words = mode == "instruct"
        self.prompt_edit.setPlaceholderText(INSTRUCTION_PLACEHOLDER if words else PROMPT_PLACEHOLDER)
        self.prompt_edit.setAccessibleName("Instruction" if words else "Prompt")

    def _on_spin_corrected(self, text: str) -> None:
        self._correction = text
        self._show_ranges()

    def _show_ranges(self) -> None:
        """The allowed values of size, steps and batch; a correction just made is said first."""
        ranges = (f"Size {self.width_spin.allowed} px · steps {self.steps_spin.minimum()}–{self.steps_spin.maximum()}"
                  f" · batch {self.batch_spin.minimum()}–{self.batch_spin.maximum()}")
        text, self._correction = (f"{self._correction} {ranges}" if self._correction else ranges), ""
        self.range_hint.setText(text)

    def _on_actions_generate_enabled_changed(self, enabled: bool, reason: str) -> None:
        self.generate_button.setEnabled(enabled)
        self.blocked_label.setText("" if enabled else f"Cannot generate: {reason}.")
        self.blocked_label.setVisible(not enabled)

    def _on_catalog_models_changed(self, models: list[ModelInfo]) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for m in models:
            kind = families.kind_label(m)
            label = m.name + (f"  ({kind})" if kind else "")
            self.model_combo.addItem(label, m.path)
            i = self.model_combo.count() - 1
            tip = f"{m.path}\n{kind or m.kind}, {m.format}" + (f"\nCannot be used: {m.problem}" if m.problem else "")
            self.model_combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
            if not m.usable:
                self.model_combo.model().item(i).setEnabled(False)
        if not models:
            self.model_combo.addItem("No models found", "")
            self.model_combo.model().item(0).setEnabled(False)
        self.model_combo.blockSignals(False)
        self._on_params_model_changed(self._params.model)
        self._apply_model_rules()

    def _apply_model_rules(self) -> None:
        """Disable what the picked model does not take (the tooltip says why), narrow the step range
        (Turbo: 1–4) and the size presets (the IF cascade's), and say what kind of model it is."""
        info = self._actions.catalog.find(self._params.model)
        off = families.unsupported(info)
        controls = {
            "negative_prompt": (self.negative_edit,), "steps": (self.steps_spin,), "guidance_scale": (self.cfg_spin,),
            "sampler": (self.sampler_combo,), "width": (self.width_spin, self.size_combo), "height": (self.height_spin,),
        }
        for name, widgets in controls.items():
            for w in widgets:
                base = self._tips.setdefault(w, w.toolTip())
                w.setEnabled(name not in off)
                w.setToolTip(f"{off[name]}." if name in off else base)
        lo, hi = families.step_range(info) or (MIN_STEPS, MAX_STEPS)
        self.steps_spin.setRange(lo, hi)
        self.steps_spin.setValue(self._params.steps)  # clamps the value (and so the parameter) into the range
        self._show_ranges()
        presets = families.size_presets(info)
        self._fill_size_combo(presets or families.with_native_size(SIZE_PRESETS, info))
        if presets and (self._params.width, self._params.height) not in presets:
            self._params.width, self._params.height = presets[0]
        kind = families.kind_label(info)
        self.model_kind_label.setText(kind)
        self.model_kind_label.setVisible(bool(kind))
        self._fill_upscalers()  # the latent upscalers are for some models only
        self._apply_hires_rules()

    def _apply_hires_rules(self) -> None:
        """The hires fix is for new images with a model that runs image to image; its settings are live only
        while it is on. The tooltip says why it is off."""
        info = self._actions.catalog.find(self._params.model)
        why = families.hires_blocked(info)
        if not why and self._params.edit_mode != "txt2img":
            why = "The hires fix makes new images: it is off while Generate edits the canvas"
        base = self._tips.setdefault(self.hires_check, self.hires_check.toolTip())
        self.hires_check.setEnabled(not why)
        self.hires_check.setToolTip(f"{why}." if why else base)
        live = not why and self._params.hires
        for row in (self.hires_row, self.hires_second_row):
            self._form.setRowVisible(row, live)

    def _fill_upscalers(self) -> None:
        """Lanczos, A1111's latent upscalers (off, with the reason, for a model whose img2img cannot start from
        latents) and the model library's GAN upscalers; a restored name not in the library is shown as such."""
        current = self._params.upscaler
        gans = [e for e in self._actions.catalog.of_kind("upscaler")
                if e.usable and e.info.format != "diffusers"]  # a diffusion x4 folder enlarges only by 4, alone
        items = ([(f"{PLAIN_UPSCALER} (resize)", PLAIN_UPSCALER)] + [(name, name) for name in LATENT_UPSCALERS]
                 + [(e.name, e.path) for e in gans])
        by_name = {e.name: e.path for e in gans}
        if current in by_name:  # a name restored from an image's settings: the library's file of that name
            self._params.upscaler = current = by_name[current]
            return
        if current not in {data for _label, data in items}:
            items.append((f"{current} (not in your model folders)", current))
        self.upscaler_combo.blockSignals(True)
        self.upscaler_combo.clear()
        for label, data in items:
            self.upscaler_combo.addItem(label, data)
            self.upscaler_combo.setItemData(self.upscaler_combo.count() - 1, data, Qt.ItemDataRole.ToolTipRole)
        why = families.latent_upscale_blocked(self._actions.catalog.find(self._params.model))
        for index in range(1, 1 + len(LATENT_UPSCALERS)):
            item = self.upscaler_combo.model().item(index)
            item.setEnabled(not why)
            item.setToolTip(f"{why}." if why else "Enlarges the first pass's latents (A1111's); the second pass "
                            "denoises from them")
        self.upscaler_combo.setCurrentIndex(self.upscaler_combo.findData(current))
        self.upscaler_combo.blockSignals(False)

    def _on_upscaler_combo_changed(self, index: int) -> None:
        data = self.upscaler_combo.itemData(index)
        if data:
            self._params.upscaler = data

    def _on_params_steps_changed(self, steps: int) -> None:
        # A new model's default steps can arrive while the box still has the previous model's range
        # (Turbo 1-8): then it is shown without writing the clamped value back; the model rules set the
        # range and clamp. Within the model's own range, the box clamps the parameter as before.
        info = self._actions.catalog.find(self._params.model)
        current = (self.steps_spin.minimum(), self.steps_spin.maximum()) == (
            families.step_range(info) or (MIN_STEPS, MAX_STEPS))
        self.steps_spin.blockSignals(not current)
        self.steps_spin.setValue(steps)
        self.steps_spin.blockSignals(False)

    def _on_catalog_scanning_changed(self, scanning: bool) -> None:
        if scanning and not self._actions.catalog.models:
            self.model_combo.setPlaceholderText("Scanning…")

    def _on_model_combo_changed(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        if path:
            self._params.model = path

    def _on_params_model_changed(self, path: str) -> None:
        i = self.model_combo.findData(path)
        if i >= 0 and i != self.model_combo.currentIndex():
            self.model_combo.blockSignals(True)
            self.model_combo.setCurrentIndex(i)
            self.model_combo.blockSignals(False)

    def _on_size_combo_activated(self, index: int) -> None:
        size = self.size_combo.itemData(index)
        if size:
            w, h = (int(v) for v in size.split("x"))
            self._params.width, self._params.height = w, h

    def _fill_size_combo(self, presets) -> None:
        """The size presets for the model (its native size first when it is not a usual one)."""
        presets = tuple(presets)
        if presets == self._size_presets:
            return
        self._size_presets = presets
        self.size_combo.blockSignals(True)
        self.size_combo.clear()
        for w, h in presets:
            self.size_combo.addItem(f"{w} × {h}", f"{w}x{h}")
        self.size_combo.addItem("Custom", None)
        self.size_combo.blockSignals(False)
        self._sync_size_combo()

    def _sync_size_combo(self) -> None:
        i = self.size_combo.findData(f"{self._params.width}x{self._params.height}")
        self.size_combo.setCurrentIndex(i if i >= 0 else self.size_combo.count() - 1)

    def _on_params_seed_mode_changed(self, mode: str) -> None:
        self.seed_mode_combo.setCurrentIndex(self.seed_mode_combo.findData(mode))
        self.seed_edit.setPlaceholderText("random" if mode == "random" else "seed")

    def _on_seed_edited(self, text: str) -> None:
        if not text:
            return
        seed = int(text)
        if seed > MAX_SEED:  # 20 digits can pass the validator: show the largest seed instead
            seed = MAX_SEED
            self.seed_edit.setText(str(seed))
        self._params.seed = seed
        self._params.seed_mode = "fixed"

    def _on_params_last_seed_changed(self, seed: int) -> None:
        self.reuse_seed_button.setEnabled(True)
        self.reuse_seed_button.setToolTip(f"Use the last seed, {seed}, again (Ctrl+R)")


def _spin(lo: int, hi: int, step: int, tip: str, suffix: str = "", name: str = "") -> CheckedSpinBox:
    spin = CheckedSpinBox(name, lo, hi, step)
    spin.setToolTip(tip)
    if suffix:
        spin.setSuffix(suffix)
    return spin


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: 600;")
    return label


def _set_text(edit: QPlainTextEdit, text: str) -> None:
    if edit.toPlainText() != text:
        edit.setPlainText(text)
