"""The main window: prompt panel | canvas over the gallery | queue; banner, progress, status bar.

The canvas is the centre: what you edit, and also the viewer for previews and gallery images.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHeaderView,
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
from desktop_app.state.canvas_actions import CanvasJob
from desktop_app.state.gallery import OpenedImage
from desktop_app.state.gallery_model import UnsavedImage
from desktop_app.state.jobs import Job, ProgressInfo
from desktop_app.state.settings import SettingsStore
from desktop_app.ui.banner import ErrorBannerWidget
from desktop_app.ui.canvas.panel import PLACEHOLDER, CanvasPanel
from desktop_app.ui.first_run import FirstRunPanel
from desktop_app.ui.gallery_panel import GalleryPanel
from desktop_app.ui.progress import ProgressWidget, progress_text
from desktop_app.ui.prompt_panel import PromptPanel
from desktop_app.ui.queue_panel import QueuePanel
from desktop_app.ui.status_bar import StatusBarWidget
from engine.library import LibraryEntry
from engine.library.records import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from desktop_app.ui.models_panel import ModelsPanel


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
        # The centre: the canvas, which also shows live previews and gallery images (as a viewer).
        self.canvas_panel = CanvasPanel(a.canvas, a.params)
        self.first_run = FirstRunPanel(str(a.demo_models_dir))
        self.gallery_panel = GalleryPanel(a)
        self.queue_panel = QueuePanel(a.queue)
        self.progress = ProgressWidget(a.queue)
        self.status_widget = StatusBarWidget(a.status)
        self.setStatusBar(self.status_widget)

        self.center_stack = QStackedWidget()
        self.center_stack.addWidget(self.canvas_panel)
        self.center_stack.addWidget(self.first_run)
        self.center_splitter = QSplitter(Qt.Orientation.Vertical)
        self.center_splitter.setObjectName("center_splitter")
        self.center_splitter.addWidget(self.center_stack)
        self.center_splitter.addWidget(self.gallery_panel)
        self.center_splitter.setStretchFactor(0, 1)
        self.center_splitter.setStretchFactor(1, 1)
        self.center_splitter.setChildrenCollapsible(False)
        self.center_splitter.setSizes([440, 360])

        self.prompt_scroll = prompt_scroll = QScrollArea()
        prompt_scroll.setWidget(self.prompt_panel)
        prompt_scroll.setWidgetResizable(True)
        # Every control fits the panel's width (no sideways scrolling hides "Add folder…" or a size box).
        prompt_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        prompt_scroll.setMinimumWidth(self.prompt_panel.minimumSizeHint().width()
                                      + prompt_scroll.verticalScrollBar().sizeHint().width() + 4)
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("main_splitter")
        self.main_splitter.addWidget(prompt_scroll)
        self.main_splitter.addWidget(self.center_splitter)
        self.main_splitter.addWidget(self.queue_panel)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setStretchFactor(2, 0)
        # The queue's list wraps its titles: it can be narrow, leaving the canvas its tool bar's width.
        self.queue_panel.setMinimumWidth(150)
        self.main_splitter.setSizes([290, 840, 150])

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(2, 4, 2, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.main_splitter, 1)
        layout.addWidget(self.progress)
        self.setCentralWidget(central)
        self.setAcceptDrops(True)

        # The Models dock starts hidden: its panel is built the first time the dock is shown, so the
        # window opens without it (a restored layout that shows it builds it straight away).
        self._models_panel: ModelsPanel | None = None
        self.models_dock = QDockWidget("Models", self)
        self.models_dock.setObjectName("models_dock")
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.models_dock)
        self.models_dock.hide()
        self.models_dock.visibilityChanged.connect(self._on_models_dock_visibility_changed)

        self.shortcuts: list[tuple[str, str]] = []  # (keys, what) for Help › Keyboard shortcuts
        actions.confirm_long_job = self.confirm_long_job
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
        self._action(file_menu, "Open image…", "Ctrl+O", self.choose_image, "Open an image on the canvas to edit it")
        self._action(file_menu, "Paste image", "Ctrl+Shift+V", self.canvas_panel.paste_clipboard, "Paste the clipboard's image as the canvas")
        self._action(file_menu, "Edit image in canvas", "Ctrl+E", self.edit_current_image,
                     "Make the image shown or selected in the gallery the canvas, to edit part of it")
        self.alpha_mask_action = QAction("Use transparency as mask", self, checkable=True)
        self.alpha_mask_action.setChecked(a.canvas.alpha_as_mask)
        self.alpha_mask_action.setToolTip("Transparent pixels of an opened image become the mask")
        self.alpha_mask_action.toggled.connect(lambda on: setattr(a.canvas, "alpha_as_mask", on))
        file_menu.addAction(self.alpha_mask_action)
        file_menu.addSeparator()
        self._action(file_menu, "Add model folder…", "Ctrl+Shift+O", self.choose_model_folder, "Add a folder of models")
        self._action(file_menu, "Download a model…", None, self.show_download_dialog,
                     "Download a model from the Hugging Face hub by its repo id")
        self._action(file_menu, "Rescan model folders", "F5", a.rescan_models, "Look for new models in the model folders")
        self._action(file_menu, "Show an image's settings…", None, self.choose_image_to_show,
                     "Show an image from anywhere (not imported); its settings can be restored")
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

        image_menu = bar.addMenu("&Image")
        self.variations_action = self._action(
            image_menu, "Variations…", "Ctrl+Shift+R", self.show_variations_dialog,
            "Make variations of the image shown, or of the canvas")
        self.upscale_action = self._action(
            image_menu, "Upscale…", "Ctrl+Shift+U", self.show_upscale_dialog,
            "Enlarge the image shown, or the canvas, x2 or x4 with an upscaler")

        self._action(image_menu, "Batch / grid…", "Ctrl+Shift+G", self.show_grid_dialog,
                     "An X/Y/Z grid over the current settings, here or on a Ray farm")
        canvas_menu = bar.addMenu("&Canvas")
        for name in ("undo", "redo", None, "brush", "eraser", "rectangle", "lasso", "smaller", "larger", None,
                     "show_mask", "invert", "clear", "grow", "shrink", "feather", "overlay_colour", None, "extend", None,
                     "zoom_in", "zoom_out", "fit", "actual", None, "accept", "discard", "compare"):
            if name is None:
                canvas_menu.addSeparator()
            else:
                canvas_menu.addAction(self.canvas_panel.actions_by_name[name])
        self.shortcuts.extend(self.canvas_panel.shortcuts)
        self.shortcuts.extend(self.gallery_panel.shortcuts)

        view = bar.addMenu("&View")
        self._action(view, "Models", "Ctrl+Shift+M", self.toggle_models,
                     "Show or hide every model found, by kind, and why a file cannot be used")
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

        engine_menu = bar.addMenu("&Settings").addMenu("Engine")
        self._action(engine_menu, "Use the engine on a cluster…", None, self.show_cluster_dialog,
                     "Run the window's engine on a Ray cluster (a GPU on another machine)")
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", "F1", self.show_shortcuts, "List the keyboard shortcuts")
        self._action(help_menu, "About Easel", None, self.show_about, "About Easel")

    def _bind(self) -> None:
        a = self._actions
        self.prompt_panel.add_folder_requested.connect(self.choose_model_folder)
        self.first_run.add_folder_requested.connect(self.choose_model_folder)
        self.first_run.demo_model_requested.connect(a.make_demo_model)
        self.canvas_panel.open_requested.connect(self.choose_image)
        self.canvas_panel.edit_requested.connect(self.edit_current_image)
        self.canvas_panel.variations_requested.connect(self.show_variations_dialog)
        self.canvas_panel.upscale_requested.connect(self.show_upscale_dialog)
        self.gallery_panel.variations_requested.connect(
            lambda item: self.show_variations_dialog(a.images.source_for(item)))
        self.gallery_panel.upscale_requested.connect(lambda item: self.show_upscale_dialog(a.images.source_for(item)))
        a.images.upscaled.connect(self._on_images_upscaled)
        a.canvas.opened.connect(lambda _s: self._show_canvas())
        a.document.candidates_changed.connect(lambda: a.document.candidates and self._show_canvas())
        # Clicking the gallery's current image again shows it again (after "Back to canvas").
        self.gallery_panel.view.clicked.connect(lambda _i: self._reshow_gallery_current())
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
        a = self._actions
        no_models = not a.catalog.usable and not a.catalog.scanning
        nothing = not a.gallery.model.rowCount() and not a.document.has_image
        leaving_first_run = self.center_stack.currentWidget() is self.first_run
        self.center_stack.setCurrentWidget(self.first_run if no_models and nothing else self.canvas_panel)
        if leaving_first_run and self.center_stack.currentWidget() is not self.first_run:
            # The focused button went away with the first-run panel: the prompt is where to type next
            # (Qt would hand the focus to the next widget in the chain, the brush-size box).
            self.prompt_panel.prompt_edit.setFocus()

    def _show_canvas(self) -> None:
        self.center_stack.setCurrentWidget(self.canvas_panel)
        self.canvas_panel.set_image(None)

    def _on_queue_job_started(self, job: Job) -> None:
        self.center_stack.setCurrentWidget(self.canvas_panel)
        if isinstance(job.origin, CanvasJob):  # the preview grows over the canvas's work region
            self._show_canvas()
            self.canvas_panel.set_caption("Starting…")
            return
        self.canvas_panel.set_placeholder(f"Generating “{job.title}”…")
        self.canvas_panel.set_caption("Starting…")

    def _on_queue_preview_changed(self, image: QImage) -> None:
        job = self._actions.queue.running
        if job is not None and isinstance(job.origin, CanvasJob):
            self.canvas_panel.show_canvas_preview(image, job.origin.box, self._preview_caption)
            return
        self.canvas_panel.set_image(image, self._preview_caption, preview=True)

    _preview_caption = "Preview"

    def _on_queue_job_progressed(self, job: Job, info: ProgressInfo) -> None:
        self._preview_caption = f"Preview · {progress_text(info)}"
        if self.canvas_panel.is_preview or isinstance(job.origin, CanvasJob):
            self.canvas_panel.set_caption(self._preview_caption)

    def _on_queue_job_removed(self, job: Job) -> None:
        if self._actions.queue.running is None:
            self._preview_caption = "Preview"
            self.canvas_panel.set_placeholder(PLACEHOLDER)
            self.canvas_panel.show_canvas_preview(None, None)
            if isinstance(job.origin, CanvasJob):
                self._show_canvas()
                self.canvas_panel.set_caption("")
            else:  # the new result (or, after a cancel, the image shown before)
                self._on_gallery_current_changed(self._actions.gallery.current)

    def _on_gallery_current_changed(self, item) -> None:
        """The gallery's current image is shown over the canvas (the viewer); None shows the canvas."""
        if self._actions.queue.running is not None and self.canvas_panel.is_preview:
            return  # the live preview keeps the view until the job ends
        if item is None:
            self.canvas_panel.set_image(None)
        elif isinstance(item, UnsavedImage):
            self.center_stack.setCurrentWidget(self.canvas_panel)
            self.canvas_panel.set_image(item.image, f"seed {item.seed} · not saved: {item.error}")
        else:
            self.center_stack.setCurrentWidget(self.canvas_panel)
            self._loading = item
            self._actions.gallery.request_image(item)

    _loading = None  # the gallery item whose image is being read for the viewer

    def _reshow_gallery_current(self) -> None:
        item = self._actions.gallery.current
        if self.canvas_panel.showing_canvas and item is not None and item is not self._loading:
            self._on_gallery_current_changed(item)

    def _on_gallery_image_loaded(self, item, image: QImage) -> None:
        if item is self._loading:
            self._loading = None
        if item is not self._actions.gallery.current or (self._actions.queue.running is not None and self.canvas_panel.is_preview):
            return
        if isinstance(item, LibraryEntry):
            seed = f"seed {item.seed} · " if item.seed is not None else ""
            caption = f"{'★ ' if item.favourite else ''}{seed}{item.width}×{item.height} · {item.name}"
        elif isinstance(item, OpenedImage):
            caption = f"{item.path.name} · " + ("settings found: Restore settings below" if item.meta.found else "no settings stored")
        else:
            caption = ""
        self.canvas_panel.set_image(image, caption)

    # -- commands -----------------------------------------------------------------------------

    def choose_image(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Open an image to edit", "",
            "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif *.ora);;All files (*)")
        if path:
            self._actions.canvas.open_file(path)

    def edit_current_image(self) -> None:
        """The image shown in the viewer, or else the one selected in the gallery, becomes the canvas."""
        if self.canvas_panel.is_preview or self._actions.edit_in_canvas(self._actions.gallery.current) is None:
            self._actions.reporter.notice("There is no image to edit: select one in the gallery, or open one (Ctrl+O).")

    def current_image_source(self):
        """The image Variations / Upscale work on: the gallery image being viewed, else the canvas, else
        the gallery's selected image (None when there is none)."""
        a = self._actions
        viewing = not self.canvas_panel.showing_canvas and not self.canvas_panel.is_preview
        if viewing and a.gallery.current is not None:
            return a.images.source_for(a.gallery.current)
        if a.document.has_image:
            return a.images.canvas_source()
        return a.images.source_for(a.gallery.current) if a.gallery.current is not None else None

    def show_variations_dialog(self, source=None):
        from desktop_app.ui.image_dialogs import VariationsDialog

        source = source or self.current_image_source()
        if source is None:
            self._actions.reporter.notice("There is no image to make variations of: select one in the gallery, "
                                          "or open one (Ctrl+O).")
            return None
        self.variations_dialog = dialog = VariationsDialog(self._actions.images, source, self)
        dialog.accepted.connect(dialog.submit)
        dialog.open()
        return dialog

    def show_cluster_dialog(self):
        from desktop_app.ui.cluster_dialog import ClusterDialog

        self.cluster_dialog = dialog = ClusterDialog(self._actions.data_dir, self)
        dialog.open()
        return dialog

    def show_grid_dialog(self):
        from desktop_app.state.grid_batch import GridLauncher
        from desktop_app.ui.grid_dialog import GridDialog

        if getattr(self, "grid_dialog", None) is None:
            self.grid_dialog = GridDialog(GridLauncher(self._actions, self), self)
        self.grid_dialog.show()
        return self.grid_dialog

    def show_upscale_dialog(self, source=None):
        from desktop_app.ui.image_dialogs import UpscaleDialog

        source = source or self.current_image_source()
        if source is None:
            self._actions.reporter.notice("There is no image to upscale: select one in the gallery, or open one (Ctrl+O).")
            return None
        self.upscale_dialog = dialog = UpscaleDialog(self._actions.images, source, self,
                                                     models_folder=str(self._actions.demo_models_dir))
        dialog.accepted.connect(dialog.submit)
        dialog.open()
        return dialog

    def _on_images_upscaled(self, shown) -> None:
        from desktop_app.ui.compare_view import UpscaleResultDialog

        self.upscale_result_dialog = dialog = UpscaleResultDialog(shown, self)
        dialog.open_in_canvas_requested.connect(self._on_upscale_result_open_in_canvas_requested)
        dialog.show()

    def _on_upscale_result_open_in_canvas_requested(self, shown) -> None:
        if shown.path and shown.path.is_file():
            self._actions.canvas.open_file(shown.path)
        else:
            self._actions.canvas.paste(shown.after, "the upscaled image")

    def show_download_dialog(self) -> None:
        from desktop_app.ui.download_dialog import DownloadDialog

        if getattr(self, "download_dialog", None) is None:
            self.download_dialog = DownloadDialog(self._actions.downloads, self)
        self.download_dialog.show()
        self.download_dialog.raise_()

    def styled_widgets(self) -> list[QWidget]:
        """The widgets resources/styles/common.qss styles (by object name), for the theme."""
        return [self.banner, self.first_run, self.prompt_panel.generate_button, self.prompt_panel.blocked_label]

    @property
    def models_panel(self) -> ModelsPanel:
        if self._models_panel is None:
            from desktop_app.ui.models_panel import ModelsPanel

            self._models_panel = ModelsPanel(self._actions)
            self._models_panel.add_folder_requested.connect(self.choose_model_folder)
            self.models_dock.setWidget(self._models_panel)
        return self._models_panel

    def _on_models_dock_visibility_changed(self, visible: bool) -> None:
        if visible:
            self.models_panel  # noqa: B018  (built on first show)

    def show_models(self) -> None:
        self.models_panel  # noqa: B018
        was_hidden = not self.models_dock.isVisible()
        self.models_dock.show()
        self.models_dock.raise_()
        if was_hidden and not self.models_dock.isFloating():
            # Docked under everything it would take half the window: a third leaves the canvas and
            # the gallery their room (the user can drag the edge).
            self.resizeDocks([self.models_dock], [max(200, self.height() // 3)], Qt.Orientation.Vertical)

    def toggle_models(self) -> None:
        if self.models_dock.isVisible():
            self.models_dock.hide()
        else:
            self.show_models()

    def focus_prompt(self) -> None:
        self.prompt_panel.prompt_edit.setFocus()
        self.prompt_panel.prompt_edit.selectAll()

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of models")
        if folder:
            self._actions.add_model_folder(folder)

    def open_outputs_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._actions.queue.output_dir)))

    def choose_image_to_show(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Show an image and its settings", "", "Images (*.png *.jpg *.jpeg *.webp)")
        if path:
            self._actions.open_image(Path(path))

    def choose_imports(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import images into the gallery", "", "Images (*.png *.jpg *.jpeg *.webp)")
        if paths:
            self._actions.gallery.import_files([Path(p) for p in paths])

    def _on_embed_action_toggled(self, on: bool) -> None:
        self._actions.settings.embed_metadata = on

    # -- drag and drop outside the canvas: one image is shown, several are imported --------------
    # (the canvas takes drops itself: an image dropped on it opens there, to edit)

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
        # Read top to bottom, never sideways: the keys take their width, the descriptions wrap.
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        table.setWordWrap(True)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        box = QVBoxLayout(dialog)
        box.addWidget(table)
        box.addWidget(buttons)
        dialog.resize(620, 560)
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

    def confirm_long_job(self, line: str) -> bool:
        """Asked before a job this device's measured speed or memory says will take very long or not fit."""
        answer = QMessageBox.question(self, "A big job" if "memory" in line else "A long job", line,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    quit_choice = "keep"  # "keep" the queue and canvas for the next start, or "discard" them

    def ask_quit(self) -> str:
        """Ask before a quit that would stop work: "keep" (restored at the next start), "discard" or "cancel"."""
        work = self._actions.work_in_progress()
        box = QMessageBox(QMessageBox.Icon.Question, "Quit Easel?",
                          f"You have {work.describe()}.", parent=self)
        box.setInformativeText("Quit keeps them: the queue and the canvas come back at the next start "
                               "(a running job starts again from its first step).")
        keep = box.addButton("Quit", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard them and quit", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        self.quit_box = box
        box.exec()
        clicked = box.clickedButton()
        return "keep" if clicked is keep else "discard" if clicked is discard else "cancel"

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if self._actions.work_in_progress().any:
            choice = self.ask_quit()
            if choice == "cancel":
                event.ignore()
                return
            self.quit_choice = choice
        self.closing.emit()
        event.accept()
