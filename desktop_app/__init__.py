"""Easel's desktop app: Qt state objects, widgets, and one bridge to the engine thread."""

from desktop_app.pyside_workarounds import pin_singletons

pin_singletons()  # before any signal is emitted: see pyside_workarounds
