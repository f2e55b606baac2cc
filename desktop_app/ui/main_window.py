"""The main window: prompt panel | image view + gallery | queue; banner, progress, status bar."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, QUrl, Signal
from pathlib import Path

from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.state.actions import StudioActions
from desktop_app.state.jobs import Job, ProgressInfo
from desktop_app.state.settings import SettingsStore
from desktop_app.ui.banner import ErrorBannerWidget
from desktop_app.ui.first_run import FirstRunPanel
from desktop_app.ui.image_view import ImageView
from desktop_app.ui.progress import ProgressWidget
from desktop_app.ui.prompt_panel import PromptPanel
from desktop_app.ui.queue_panel import QueuePanel
from desktop_app.state.gallery import OpenedImage
from desktop_app.state.gallery_model import UnsavedImage
from desktop_app.ui.gallery_panel import GalleryPanel
from engine.library import LibraryEntry
from engine.library.records import IMAGE_SUFFIXES
from desktop_app.ui.status_bar import StatusBarWidget


class MainWindow(QMainWindow):
    closing = Signal()
    theme_requested = Signal(str)

    def __init__(self, actions: StudioActions, log_path: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Easel")
        self.setObjectName("MainWindow")
        self.resize(1280, 820)
        self._actions = actions
        a = actions

        self.banner = ErrorBannerWidget(a.reporter, log_path)
        self.prompt_panel = PromptPanel(a.params, a)
        self.image_view = ImageView()
        self.first_run = FirstRunPanel(str(a.demo_models_dir))
        self.gallery_panel = GalleryPanel(a)
        self.queue_panel = QueuePanel(a.queue)
        self.progress = ProgressWidget(a.queue)
        self.status_widget = StatusBarWidget(a.status)
        self.setStatusBar(self.status_widget)

        self.center_stack = QStackedWidget()
        self.center_stack.addWidget(self.image_view)
        self.center_stack.addWidget(self.first_run)
        self.center_splitter = QSplitter(Qt.Orientation.Vertical)
        self.center_splitter.setObjectName("center_splitter")
        self.center_splitter.addWidget(self.center_stack)
        self.center_splitter.addWidget(self.gallery_panel)
        self.center_splitter.setStretchFactor(0, 1)
        self.center_splitter.setStretchFactor(1, 1)
        self.center_splitter.setChildrenCollapsible(False)
        self.center_splitter.setSizes([440, 360])

        prompt_scroll = QScrollArea()
        prompt_scroll.setWidget(self.prompt_panel)
        prompt_scroll.setWidgetResizable(True)
        prompt_scroll.setMinimumWidth(300)
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("main_splitter")
        self.main_splitter.addWidget(prompt_scroll)
        self.main_splitter.addWidget(self.center_splitter)
        self.main_splitter.addWidget(self.queue_panel)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setStretchFactor(2, 0)
        self.main_splitter.setSizes([340, 720, 220])

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.main_splitter, 1)
        layout.addWidget(self.progress)
        self.setCentralWidget(central)
        self.setAcceptDrops(True)

        self.shortcuts: list[tuple[str, str]] = []  # (keys, what) for Help › Keyboard shortcuts
        self._build_actions()
        self._bind()
        self._update_center()
        self.prompt_panel.prompt_edit.setFocus()

    # -- actions and menus --------------------------------------------------------------------

    def _action(self, menu, text: str, keys: list[str] | str | None, slot, tip: str) -> QAction:
        action = QAction(text, self)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        if keys:
            keys = [keys] if isinstance(keys, str) else keys
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.shortcuts.append((" or ".join(QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in keys), tip))
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _build_actions(self) -> None:
        a = self._actions
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "Add model folder…", "Ctrl+Shift+O", self.choose_model_folder, "Add a folder of models")
        self._action(file_menu, "Rescan model folders", "F5", a.rescan_models, "Look for new models in the model folders")
        self._action(file_menu, "Open image…", "Ctrl+O", self.choose_image, "Show an image from anywhere; its settings can be restored")
        self._action(file_menu, "Import images into the gallery…", None, self.choose_imports, "Copy images into the gallery library")
        self._action(file_menu, "Open outputs folder", "Ctrl+Shift+E", self.open_outputs_folder, "Open the folder where images are saved")
        self.embed_action = QAction("Save generation settings in images", self, checkable=True)
        self.embed_action.setChecked(a.settings.embed_metadata)
        self.embed_action.setToolTip("When off, saved images carry no prompt, seed or model")
        self.embed_action.toggled.connect(self._on_embed_action_toggled)
        file_menu.addAction(self.embed_action)
        self._action(file_menu, "Empty the gallery trash", None, a.gallery.empty_trash, "Delete the trashed images for good")
        file_menu.addSeparator()
        self._action(file_menu, "Quit", "Ctrl+Q", self.close, "Quit Easel (a running job is cancelled)")

        gen = bar.addMenu("&Generate")
        self.generate_action = self._action(gen, "Generate", ["Ctrl+Return", "Ctrl+Enter"], a.generate, "Generate, or queue if busy")
        self.cancel_action = self._action(gen, "Cancel running job", "Esc", a.cancel_current, "Stop the running job within one step")
        self._action(gen, "Clear pending jobs", "Ctrl+Shift+Del", a.queue.clear_pending, "Remove every job waiting in the queue")
        cancel_selected = self._action(gen, "Cancel selected job", "Del", self.queue_panel.cancel_selected,
                                       "Cancel the job selected in the queue")
        # Del belongs to whichever list has the focus: the queue here, the gallery (move to trash) there.
        cancel_selected.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.removeAction(cancel_selected)
        self.queue_panel.addAction(cancel_selected)
        self._action(gen, "Move job up", "Ctrl+Up", lambda: self.queue_panel.move_selected(-1), "Run the selected pending job sooner")
        self._action(gen, "Move job down", "Ctrl+Down", lambda: self.queue_panel.move_selected(1), "Run the selected pending job later")
        gen.addSeparator()
        self._action(gen, "Reuse last seed", "Ctrl+R", a.reuse_last_seed, "Set the seed to the last image's seed")
        self._action(gen, "Focus prompt", "Ctrl+L", self.focus_prompt, "Put the cursor in the prompt")

        view = bar.addMenu("&View")
        self._action(view, "Previous image", "Alt+Left", lambda: a.gallery.select_relative(-1), "Show the next newer image in the gallery")
        self._action(view, "Next image", "Alt+Right", lambda: a.gallery.select_relative(1), "Show the next older image in the gallery")
        theme_menu = view.addMenu("Theme")
        self.theme_group = QActionGroup(self)
        for key, label in (("system", "Follow the system"), ("dark", "Dark"), ("light", "Light")):
            t = QAction(label, self, checkable=True)
            t.setData(key)
            t.setChecked(key == a.settings.theme)
            t.triggered.connect(lambda _c=False, k=key: self.theme_requested.emit(k))
            self.theme_group.addAction(t)
            theme_menu.addAction(t)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", "F1", self.show_shortcuts, "List the keyboard shortcuts")
        self._action(help_menu, "About Easel", None, self.show_about, "About Easel")

    def _bind(self) -> None:
        a = self._actions
        self.prompt_panel.add_folder_requested.connect(self.choose_model_folder)
        self.first_run.add_folder_requested.connect(self.choose_model_folder)
        self.first_run.demo_model_requested.connect(a.make_demo_model)
        a.generate_enabled_changed.connect(self._on_actions_generate_enabled_changed)
        a.catalog.models_changed.connect(lambda _m: self._update_center())
        a.status.engine_state_changed.connect(lambda s: self.first_run.set_engine_ready(s == "ready"))
        self.first_run.set_engine_ready(a.status.engine_state == "ready")
        a.queue.job_started.connect(self._on_queue_job_started)
        a.queue.preview_changed.connect(self._on_queue_preview_changed)
        a.queue.job_progressed.connect(self._on_queue_job_progressed)
        a.queue.job_removed.connect(self._on_queue_job_removed)
        a.gallery.current_changed.connect(self._on_gallery_current_changed)
        a.gallery.image_loaded.connect(self._on_gallery_image_loaded)
        self._on_actions_generate_enabled_changed(a.generate_enabled, a.generate_blocked_reason)

    # -- slots --------------------------------------------------------------------------------

    def _on_actions_generate_enabled_changed(self, enabled: bool, reason: str) -> None:
        self.generate_action.setEnabled(enabled)

    def _update_center(self) -> None:
        no_models = not self._actions.catalog.usable and not self._actions.catalog.scanning
        self.center_stack.setCurrentWidget(self.first_run if no_models and not self._actions.gallery.model.rowCount() else self.image_view)

    def _on_queue_job_started(self, job: Job) -> None:
        self.center_stack.setCurrentWidget(self.image_view)
        self.image_view.set_placeholder(f"Generating “{job.title}”…")
        if self._actions.gallery.current is None:
            self.image_view.set_image(None)
        self.image_view.set_caption("Starting…")

    def _on_queue_preview_changed(self, image: QImage) -> None:
        self.image_view.set_image(image, self._preview_caption, preview=True)

    _preview_caption = "Preview"

    def _on_queue_job_progressed(self, job: Job, info: ProgressInfo) -> None:
        self._preview_caption = f"Preview · step {info.step}/{info.total}"
        if self.image_view.is_preview:
            self.image_view.set_caption(self._preview_caption)

    def _on_queue_job_removed(self, job: Job) -> None:
        if self._actions.queue.running is None:
            self.image_view.set_placeholder("No image yet. Write a prompt and press Ctrl+Enter.")
            self._preview_caption = "Preview"
            self._on_gallery_current_changed(self._actions.gallery.current)

    def _on_gallery_current_changed(self, item) -> None:
        if self._actions.queue.running is not None and self.image_view.is_preview:
            return  # the live preview keeps the view until the job ends
        if item is None:
            self.image_view.set_image(None)
        elif isinstance(item, UnsavedImage):
            self.center_stack.setCurrentWidget(self.image_view)
            self.image_view.set_image(item.image, f"seed {item.seed} · not saved: {item.error}")
        else:
            self.center_stack.setCurrentWidget(self.image_view)
            self._actions.gallery.request_image(item)

    def _on_gallery_image_loaded(self, item, image: QImage) -> None:
        if item is not self._actions.gallery.current or (self._actions.queue.running is not None and self.image_view.is_preview):
            return
        if isinstance(item, LibraryEntry):
            seed = f"seed {item.seed} · " if item.seed is not None else ""
            caption = f"{'★ ' if item.favourite else ''}{seed}{item.width}×{item.height} · {item.name}"
        elif isinstance(item, OpenedImage):
            caption = f"{item.path.name} · " + ("settings found: Restore settings below" if item.meta.found else "no settings stored")
        else:
            caption = ""
        self.image_view.set_image(image, caption)

    # -- commands -----------------------------------------------------------------------------

    def focus_prompt(self) -> None:
        self.prompt_panel.prompt_edit.setFocus()
        self.prompt_panel.prompt_edit.selectAll()

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of models")
        if folder:
            self._actions.add_model_folder(folder)

    def open_outputs_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._actions.queue.output_dir)))

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an image", "", "Images (*.png *.jpg *.jpeg *.webp)")
        if path:
            self._actions.open_image(Path(path))

    def choose_imports(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import images into the gallery", "", "Images (*.png *.jpg *.jpeg *.webp)")
        if paths:
            self._actions.gallery.import_files([Path(p) for p in paths])

    def _on_embed_action_toggled(self, on: bool) -> None:
        self._actions.settings.embed_metadata = on

    # -- drag and drop: an image from anywhere opens; several are imported ------------------

    @staticmethod
    def _dropped_images(event) -> list[Path]:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        return [Path(u.toLocalFile()) for u in urls if u.isLocalFile() and u.toLocalFile().lower().endswith(IMAGE_SUFFIXES)]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt name)
        if self._dropped_images(event) and event.source() is None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt name)
        paths = self._dropped_images(event)
        if len(paths) == 1:
            self._actions.open_image(paths[0])
        elif paths:
            self._actions.gallery.import_files(paths)
        event.acceptProposedAction()

    def show_shortcuts(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(self.shortcuts), 2)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        for row, (keys, what) in enumerate(self.shortcuts):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(what))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        box = QVBoxLayout(dialog)
        box.addWidget(table)
        box.addWidget(buttons)
        dialog.resize(560, 460)
        dialog.setModal(False)
        dialog.show()
        self.shortcuts_dialog = dialog

    def show_about(self) -> None:
        QMessageBox.about(self, "About Easel", "Easel: an offline image studio. Everything runs on this computer.")

    # -- persistence --------------------------------------------------------------------------

    def save_layout(self, settings: SettingsStore) -> None:
        settings.set_window(
            bytes(self.saveGeometry().toBase64()).decode("ascii"),
            bytes(self.saveState().toBase64()).decode("ascii"),
            {s.objectName(): s.sizes() for s in (self.main_splitter, self.center_splitter, self.gallery_panel.splitter)},
        )

    def restore_layout(self, settings: SettingsStore) -> None:
        w = settings.window
        try:
            if w.get("geometry"):
                self.restoreGeometry(QByteArray.fromBase64(w["geometry"].encode("ascii")))
            if w.get("state"):
                self.restoreState(QByteArray.fromBase64(w["state"].encode("ascii")))
            for s in (self.main_splitter, self.center_splitter, self.gallery_panel.splitter):
                sizes = w.get("splitters", {}).get(s.objectName())
                if isinstance(sizes, list) and len(sizes) == s.count() and all(isinstance(x, int) for x in sizes):
                    s.setSizes(sizes)
        except (AttributeError, TypeError, ValueError):
            pass  # a hand-edited layout is not worth an error

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        self.closing.emit()
        event.accept()
