"""FakeEngine: a second implementation of engine.engine.Engine's interface for UI tests.

It makes solid-colour images step by step. Each step does a little real work (fills a small image)
and reports Progress with a preview every ``preview_every`` steps; cancel is honoured after every
step, as in the real engine. ``hold_at_step`` parks the engine thread at that step until
``release()`` or cancel, so a test can act "mid-run" without sleeping.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from PIL import Image

from engine.api import (
    Cancelled,
    GenerationRequest,
    ModelError,
    ModelInfo,
    Progress,
    Result,
    RuntimeSettings,
    Timings,
    random_seed,
)

BAD_MODEL_MARKER = b"not a model"


def make_fake_model(path: Path, bad: bool = False) -> Path:
    """A file the fake engine accepts (or rejects, with ``bad``).

    A good one is a real safetensors file whose header reads as an SD1 checkpoint (so the model
    picker lists it as usable) with placeholder weights; a bad one is not safetensors at all.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if bad:
        path.write_bytes(BAD_MODEL_MARKER)
        return path
    import numpy as np
    from safetensors.numpy import save_file

    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": np.zeros((8, 4, 1, 1), dtype=np.float16),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": np.zeros((1, 4), dtype=np.int64),
            "first_stage_model.decoder.conv_out.weight": np.zeros((3, 4, 1, 1), dtype=np.float16),
        },
        str(path),
    )
    return path


def colour_for(seed: int) -> tuple[int, int, int]:
    return (seed * 67 % 256, seed * 131 % 256, seed * 29 % 256)


class FakeEngine:
    def __init__(self, device: str | None = None, preview_every: int = 2):
        self.device = device or "cpu"
        self.dtype = "float32"
        self.preview_every = preview_every
        self._loaded: ModelInfo | None = None
        self._runtime: RuntimeSettings | None = None
        self.hold_at_step: int | None = None
        # With ``stuck`` the hold is one huge step that never looks at the cancel (only release() ends it).
        self.stuck = False
        self.memory = None  # the MemoryUse each Result reports (the real engine measures it)
        self.held = threading.Event()  # set while parked at hold_at_step
        self._release = threading.Event()
        self.calls: list[GenerationRequest] = []  # every generate() that started, in order
        self.steps_run = 0
        self.on_step: Callable[[int], None] | None = None
        self.threads: set[str] = set()
        self.unloaded = False

    @property
    def loaded(self) -> ModelInfo | None:
        return self._loaded

    @property
    def runtime(self) -> RuntimeSettings | None:
        return self._runtime

    def release(self) -> None:
        self._release.set()

    def upscale(self, request, on_progress=None, cancel=None):
        """GAN upscales run for real (the tiny upscalers are fast): through a real Engine on the CPU."""
        if getattr(self, "_upscaler_engine", None) is None:
            from engine.engine import Engine

            self._upscaler_engine = Engine(device="cpu", keep_models=0)
        self.threads.add(threading.current_thread().name)
        return self._upscaler_engine.upscale(request, on_progress, cancel)

    def load(self, model_path: str, memory_preset: str = "auto") -> ModelInfo:
        self.threads.add(threading.current_thread().name)
        p = Path(model_path).expanduser().resolve()
        if not p.exists():
            raise ModelError(str(p), "no such file or folder")
        if p.is_file() and not p.read_bytes()[8:9] == b"{":
            raise ModelError(str(p), "not a safetensors file (the header is unreadable)")
        self._loaded = ModelInfo(path=str(p), name=p.stem, kind="checkpoint", family="sd1", format="safetensors")
        self._runtime = RuntimeSettings(device=self.device, dtype=self.dtype, preset="fast" if memory_preset == "auto" else memory_preset)
        return self._loaded

    def unload(self) -> None:
        self._loaded = None
        self.unloaded = True

    def generate(
        self,
        request: GenerationRequest,
        on_progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        self.threads.add(threading.current_thread().name)
        started = time.perf_counter()
        self.calls.append(request)
        if request.model:
            self.load(request.model, request.memory_preset)
        seed = request.seed if request.seed is not None else random_seed()
        request = request.replace(seed=seed)
        images, seeds = [], []
        for index in range(request.batch_count):
            image_seed = seed + index
            target = colour_for(image_seed)
            for step in range(1, request.steps + 1):
                if cancel is not None and cancel.is_set():
                    raise Cancelled(step - 1, request.steps)
                t = step / request.steps
                colour = tuple(int(c * t) for c in target)
                preview = None
                if step % self.preview_every == 0 or step == request.steps:
                    preview = Image.new("RGB", (max(8, request.width // 8), max(8, request.height // 8)), colour)
                self.steps_run += 1
                if on_progress is not None:
                    on_progress(Progress(step, request.steps, time.perf_counter() - started, index, request.batch_count,
                                         preview=preview))
                if self.on_step is not None:
                    self.on_step(step)
                if self.hold_at_step == step:
                    self.held.set()
                    while not self._release.is_set() and (self.stuck or not (cancel is not None and cancel.is_set())):
                        self._release.wait(0.005)
                    self.held.clear()
                if cancel is not None and cancel.is_set():
                    raise Cancelled(step, request.steps)
            images.append(_as_engine_returns(request, Image.new("RGB", (request.width, request.height), target)))
            seeds.append(image_seed)
        return Result(
            images=tuple(images),
            seeds=tuple(seeds),
            request=request,
            model=self._loaded or ModelInfo("", "none", "checkpoint", "", "safetensors"),
            model_hash="0123456789",
            settings=self._runtime or RuntimeSettings(self.device, self.dtype, "fast"),
            timings=Timings(denoise=time.perf_counter() - started, total=time.perf_counter() - started),
            memory=self.memory,
        )


def _as_engine_returns(request: GenerationRequest, generated: Image.Image) -> Image.Image:
    """Inpaint results are pasted back into the source and padded sizes cropped back, as the real engine does."""
    from engine import imageprep
    from engine.api import Mode

    if request.mode is Mode.INPAINT:
        return imageprep.finish(imageprep.plan_inpaint(request), generated, request.mask_blur)
    if request.mode is Mode.IMG2IMG:
        return imageprep.finish(imageprep.plan_img2img(request.init_image, request.width, request.height),
                                generated, 0)
    return generated
