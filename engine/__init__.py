"""Easel's engine: Qt-free. Requests in, images out (see engine.api)."""

__version__ = "0.1.0"
