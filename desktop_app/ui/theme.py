"""Dark and light palettes on the Fusion style; "system" follows the platform's colour scheme."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from engine.paths import resources_dir


def resolve_theme(theme: str) -> str:
    """"dark" or "light". "system" follows the platform; an unknown scheme gets dark (an image studio)."""
    if theme in ("dark", "light"):
        return theme
    scheme = QGuiApplication.styleHints().colorScheme()
    return "light" if scheme == Qt.ColorScheme.Light else "dark"


def _dark_palette() -> QPalette:
    p = QPalette()
    window, base, text = QColor(37, 39, 43), QColor(27, 29, 32), QColor(226, 228, 232)
    accent = QColor(88, 140, 230)
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Window, window)
        p.setColor(group, QPalette.ColorRole.WindowText, text)
        p.setColor(group, QPalette.ColorRole.Base, base)
        p.setColor(group, QPalette.ColorRole.AlternateBase, QColor(44, 47, 52))
        p.setColor(group, QPalette.ColorRole.ToolTipBase, QColor(50, 53, 58))
        p.setColor(group, QPalette.ColorRole.ToolTipText, text)
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor(130, 134, 140))
        p.setColor(group, QPalette.ColorRole.Text, text)
        p.setColor(group, QPalette.ColorRole.Button, QColor(50, 53, 58))
        p.setColor(group, QPalette.ColorRole.ButtonText, text)
        p.setColor(group, QPalette.ColorRole.BrightText, QColor(255, 110, 110))
        p.setColor(group, QPalette.ColorRole.Highlight, accent)
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
        p.setColor(group, QPalette.ColorRole.Link, QColor(120, 170, 255))
        p.setColor(group, QPalette.ColorRole.Mid, QColor(120, 124, 130))
        p.setColor(group, QPalette.ColorRole.Light, QColor(70, 74, 80))
        p.setColor(group, QPalette.ColorRole.Dark, QColor(20, 21, 24))
    disabled = QPalette.ColorGroup.Disabled
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(disabled, role, QColor(110, 113, 118))
    p.setColor(disabled, QPalette.ColorRole.Base, QColor(32, 34, 37))
    p.setColor(disabled, QPalette.ColorRole.Button, QColor(42, 44, 48))
    p.setColor(disabled, QPalette.ColorRole.Window, window)
    p.setColor(disabled, QPalette.ColorRole.Highlight, QColor(70, 74, 80))
    return p


def apply_theme(app: QApplication, theme: str, styled: Iterable[QWidget] = ()) -> str:
    """Apply a theme setting ("system", "dark", "light"); returns the one applied. ``styled``: the
    widgets that take resources/styles/common.qss (set again, so its palette() colours follow)."""
    resolved = apply_app_theme(app, theme)
    apply_style_sheet(styled)
    return resolved


def apply_app_theme(app: QApplication, theme: str) -> str:
    """The application's part of a theme: the Fusion style, the palette and the window icon.
    Cheapest before any widget exists (nothing to re-polish); returns the theme applied."""
    resolved = resolve_theme(theme)
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if resolved == "dark" else app.style().standardPalette())
    icon = resources_dir() / "icons" / "easel.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return resolved


def apply_style_sheet(styled: Iterable[QWidget]) -> None:
    """resources/styles/common.qss on each of ``styled`` (set after the window is built: a widget with
    a style sheet is re-polished each time it is reparented)."""
    qss = resources_dir() / "styles" / "common.qss"
    sheet = qss.read_text(encoding="utf-8") if qss.is_file() else ""
    for widget in styled:
        widget.setStyleSheet(sheet)
