"""Easel's desktop app: Qt state objects, widgets, and one bridge to the engine thread."""
