"""The models panel (every model file found, by kind, with the reason a file cannot be used) and the
LoRA picker that inserts ``<lora:name:0.8>`` into the prompt."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.actions import StudioActions
from desktop_app.state.families import family_label, kind_label, lora_reason

TABS = (
    ("Checkpoints", ("checkpoint", "inpaint")),
    ("LoRAs", ("lora",)),
    ("Embeddings", ("embedding",)),
    ("VAEs", ("vae",)),
    ("Upscalers", ("upscaler",)),
    ("Previews", ("taesd",)),
)
_KIND_TEXT = {"checkpoint": "checkpoint", "inpaint": "inpainting", "lora": "LoRA", "embedding": "embedding",
              "vae": "VAE", "upscaler": "upscaler", "taesd": "preview decoder", "unknown": "—"}


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class ModelsPanel(QWidget):
    """Lists the library by kind; "Cannot use" lists the rest with why. Binds to ``actions.catalog``."""

    add_folder_requested = Signal()

    def __init__(self, actions: StudioActions, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ModelsPanel")
        self._actions = actions
        self.tabs = QTabWidget()
        self.trees: dict[str, QTreeWidget] = {}
        for title, _kinds in (*TABS, ("Cannot use", ())):
            tree = QTreeWidget()
            tree.setHeaderLabels(["Name", "Family", "Size", "From", "Note"] if title != "Cannot use"
                                 else ["Name", "Size", "From", "Why it cannot be used"])
            tree.setRootIsDecorated(False)
            tree.setAlternatingRowColors(True)
            tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
            tree.header().setStretchLastSection(True)
            tree.itemDoubleClicked.connect(self._on_tree_item_double_clicked)
            self.trees[title] = tree
            self.tabs.addTab(tree, title)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Add a folder of models, or an A1111 / ComfyUI / InvokeAI install (scanned in place)")
        self.rescan_button = QPushButton("Rescan")
        self.insert_button = QPushButton("Insert LoRA in prompt")
        self.insert_button.setToolTip("Adds <lora:name:0.8> to the prompt (double-click a LoRA does the same)")
        self.convert_button = QPushButton("Convert to .safetensors…")
        self.convert_button.setToolTip("Reads the pickle in a separate, restricted process and writes a .safetensors beside it")

        buttons = QHBoxLayout()
        for b in (self.add_button, self.rescan_button, self.insert_button, self.convert_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        root.addWidget(self.summary)
        root.addWidget(self.tabs, 1)
        root.addLayout(buttons)

        self.add_button.clicked.connect(self.add_folder_requested)
        self.rescan_button.clicked.connect(lambda: actions.rescan_models())
        self.insert_button.clicked.connect(self._insert_selected_lora)
        self.convert_button.clicked.connect(self._convert_selected)
        self.tabs.currentChanged.connect(lambda _i: self._update_buttons())
        for tree in self.trees.values():
            tree.itemSelectionChanged.connect(self._update_buttons)
        actions.catalog.entries_changed.connect(self._on_catalog_entries_changed)
        actions.catalog.scanning_changed.connect(self._on_catalog_scanning_changed)
        self._on_catalog_entries_changed(actions.catalog.entries)

    def _on_catalog_scanning_changed(self, scanning: bool) -> None:
        if scanning:
            self.summary.setText("Scanning the model folders…")

    def _on_catalog_entries_changed(self, entries: list) -> None:
        for tree in self.trees.values():
            tree.clear()
        unusable = []
        for title, kinds in TABS:
            tree = self.trees[title]
            for e in entries:
                if e.kind not in kinds:
                    continue
                if not e.usable:
                    unusable.append(e)
                    continue
                note = kind_label(e.info) if e.kind in ("checkpoint", "inpaint", "upscaler") else ""
                family = family_label(e.info)
                item = QTreeWidgetItem([e.name, family, _size(e.info.size_bytes), e.source, note])
                item.setData(0, Qt.ItemDataRole.UserRole, e)
                item.setToolTip(0, e.path)
                tree.addTopLevelItem(item)
            self.tabs.setTabText(self.tabs.indexOf(tree), f"{title} ({tree.topLevelItemCount()})")
        unusable += [e for e in entries if e.kind not in {k for _t, ks in TABS for k in ks}]
        bad = self.trees["Cannot use"]
        for e in unusable:
            item = QTreeWidgetItem([e.name, _size(e.info.size_bytes), e.source, e.reason])
            item.setData(0, Qt.ItemDataRole.UserRole, e)
            item.setToolTip(0, e.path)
            item.setToolTip(3, e.info.problem or e.reason)
            bad.addTopLevelItem(item)
        self.tabs.setTabText(self.tabs.indexOf(bad), f"Cannot use ({len(unusable)})")
        roots = len(self._actions.library.roots())
        self.summary.setText(f"{len(entries)} model files in {roots} folder(s); {len(unusable)} cannot be used "
                             "(see why in the last tab). Files stay where they are: nothing is copied.")
        self._update_buttons()

    def _selected(self):
        tree = self.tabs.currentWidget()
        items = tree.selectedItems() if isinstance(tree, QTreeWidget) else []
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def _update_buttons(self) -> None:
        entry = self._selected()
        self.insert_button.setEnabled(entry is not None and entry.kind == "lora")
        self.convert_button.setEnabled(entry is not None and entry.convertible)

    def _on_tree_item_double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        entry = item.data(0, Qt.ItemDataRole.UserRole)
        if entry is not None and entry.kind == "lora":
            self._actions.insert_lora(entry.name)

    def _insert_selected_lora(self) -> None:
        entry = self._selected()
        if entry is not None and entry.kind == "lora":
            self._actions.insert_lora(entry.name)

    def _convert_selected(self) -> None:
        entry = self._selected()
        if entry is None or not entry.convertible:
            return
        answer = QMessageBox.question(
            self, "Convert to .safetensors",
            f"Convert “{entry.name}” to .safetensors?\n\nThe file is read in a separate process that only "
            "accepts plain weights: a file that tries to run code is refused. The new file is written beside "
            "the original, which is left as it is.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self._actions.convert_model(entry.path)


class LoraPickerWidget(QToolButton):
    """“LoRA ▾” under the prompt: a menu of the LoRAs found; choosing one inserts <lora:name:0.8>."""

    def __init__(self, actions: StudioActions, parent: QWidget | None = None):
        super().__init__(parent)
        self._actions = actions
        self.setText("Add LoRA")
        self.setToolTip("Insert a LoRA into the prompt as <lora:name:0.8> (edit the weight in the prompt)")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu_ = QMenu(self)
        self.setMenu(self.menu_)
        actions.catalog.entries_changed.connect(self._on_catalog_entries_changed)
        actions.params.model_changed.connect(self._on_model_changed)
        actions.catalog.models_changed.connect(self._on_model_changed)
        self._on_catalog_entries_changed(actions.catalog.entries)
        self._on_model_changed()

    def _on_model_changed(self, *_args) -> None:
        """Greyed out, with the reason, while the chosen model takes no LoRA (FLUX, SD 3.5, …)."""
        why = lora_reason(self._actions.catalog.find(self._actions.params.model))
        self.setEnabled(not why)
        self.setToolTip(why or "Insert a LoRA into the prompt as <lora:name:0.8> (edit the weight in the prompt)")

    def _on_catalog_entries_changed(self, entries: list) -> None:
        self.menu_.clear()
        loras = [e for e in entries if e.kind == "lora" and e.usable]
        for e in loras:
            label = f"{e.name}  ({family_label(e.info)})"
            self.menu_.addAction(label, lambda name=e.name: self._actions.insert_lora(name))
        if not loras:
            self.menu_.addAction("No LoRAs found in the model folders").setEnabled(False)
        self.setText(f"Add LoRA ({len(loras)})" if loras else "Add LoRA")
