"""``EngineProtocol``: what the desktop app and the CLI may use of an engine. ``engine.engine.Engine``
implements it, and so does the tests' FakeEngine; a conformance test checks both, so the fake cannot
drift from the real thing. No torch: any thread may import it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from engine.api import GenerationRequest, ModelInfo, Progress, Result, RuntimeSettings, UpscaleRequest


@runtime_checkable
class EngineProtocol(Protocol):
    """One loaded model, requests in, images out; every method runs on the engine's owning thread."""

    device: str
    preview_every: int

    @property
    def loaded(self) -> ModelInfo | None:
        """The model loaded now (None before the first load)."""

    @property
    def runtime(self) -> RuntimeSettings | None:
        """The device and memory settings it sits on."""

    def load(self, model_path: str, memory_preset: str = "auto") -> ModelInfo:
        """Load a model (kept until another is asked for); raises ModelError with one line."""

    def unload(self) -> None:
        """Free the model and its memory."""

    def generate(self, request: GenerationRequest, on_progress: Callable[[Progress], None] | None = None,
                 cancel: threading.Event | None = None) -> Result:
        """Run a request: progress every step, cancel within one step (Cancelled, no image)."""

    def upscale(self, request: UpscaleRequest, on_progress: Callable[[Progress], None] | None = None,
                cancel: threading.Event | None = None) -> Any:
        """A GAN upscale, tile by tile; returns an ``engine.upscale.UpscaleResult``."""
