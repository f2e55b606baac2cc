"""``easel selftest``: prove generation works on this machine, offline, with tiny models.

Builds tiny random-weight models (a diffusers folder and a single original-layout file) in a temp
folder and runs txt2img, img2img and inpaint through the real loading path. Images from random
weights are noise, so the checks are about the machinery: sizes, finite non-blank pixels, pixels
outside the inpaint mask unchanged, metadata that reads back, the same seed giving the same pixels.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image, ImageDraw


def run_selftest(device: str | None = None, out: TextIO | None = None) -> bool:
    """Run every check, print one line each and a summary; True when all passed."""
    results: list[bool] = []

    def report(name: str, check: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        try:
            detail = check()
            ok = True
        except Exception as exc:  # a failed check is reported, never raised
            detail, ok = f"{type(exc).__name__}: {exc}", False
        results.append(ok)
        if out:
            print(f"{'ok  ' if ok else 'FAIL'}  {name:<42} {time.perf_counter() - t0:5.1f}s  {detail}", file=out)

    from engine import __version__
    from engine.api import GenerationRequest, Mode
    from engine.engine import Engine
    from engine.metadata import read_metadata
    from engine.outputs import save_image
    from engine.testmodels import make_test_model

    if out:
        print(f"easel {__version__} self-test", file=out)
    with tempfile.TemporaryDirectory(prefix="easel-selftest-") as tmp:
        root = Path(tmp)
        state: dict = {}

        def build() -> str:
            state["folder"] = make_test_model(root / "tiny-sd15", family="sd15")
            state["single"] = make_test_model(root / "tiny-sd15.safetensors", family="sd15", single_file=True)
            state["engine"] = Engine(device=device)
            return f"device {state['engine'].device}"

        def txt2img(key: str) -> Callable[[], str]:
            def run() -> str:
                req = GenerationRequest(prompt="a lighthouse at dusk", model=str(state[key]), seed=7, steps=4,
                                        width=64, height=64, sampler="Euler")
                result = state["engine"].generate(req)
                image = result.images[0]
                _check_image(image, (64, 64))
                state[f"{key}-result"] = result
                return f"{image.size[0]}x{image.size[1]} in {result.timings.total:.2f}s"
            return run

        def same_seed() -> str:
            first = state["folder-result"]
            again = state["engine"].generate(first.request)
            if not np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0])):
                raise AssertionError("the same seed gave different pixels")
            return "identical pixels"

        def metadata() -> str:
            path = save_image(state["folder-result"], 0, root / "out.png")
            meta = read_metadata(path)
            if meta.fields.get("prompt") != "a lighthouse at dusk" or meta.fields.get("seed") != 7:
                raise AssertionError(f"metadata read back as {meta.fields}")
            return "prompt and seed read back"

        def img2img() -> str:
            init = state["folder-result"].images[0]
            req = GenerationRequest(prompt="a lighthouse", model=str(state["single"]), mode=Mode.IMG2IMG,
                                    init_image=init, strength=0.6, seed=3, steps=4, width=64, height=64)
            result = state["engine"].generate(req)
            _check_image(result.images[0], (64, 64))
            return "64x64"

        def inpaint() -> str:
            init = Image.new("RGB", (96, 64), (40, 90, 160))
            ImageDraw.Draw(init).ellipse((10, 10, 50, 50), fill=(230, 200, 40))
            mask = Image.new("L", init.size, 0)
            ImageDraw.Draw(mask).rectangle((56, 8, 88, 56), fill=255)
            req = GenerationRequest(prompt="a boat", model=str(state["folder"]), mode=Mode.INPAINT, init_image=init,
                                    mask=mask, strength=1.0, seed=5, steps=4, width=96, height=64)
            result = state["engine"].generate(req)
            image = result.images[0]
            _check_image(image, init.size)
            outside = np.asarray(mask) == 0
            if not np.array_equal(np.asarray(image)[outside], np.asarray(init)[outside]):
                raise AssertionError("pixels outside the mask changed")
            return "outside-mask pixels identical"

        report("build tiny models and start the engine", build)
        if results[-1]:
            report("txt2img, diffusers folder", txt2img("folder"))
            report("txt2img, single .safetensors file", txt2img("single"))
            report("same seed, same pixels", same_seed)
            report("metadata written and read back", metadata)
            report("img2img, single file", img2img)
            report("inpaint, outside mask unchanged", inpaint)
    passed = sum(results)
    if out:
        print(f"{passed}/{len(results)} checks passed", file=out)
    return all(results)


def _check_image(image: Image.Image, size: tuple[int, int]) -> None:
    if image.size != size:
        raise AssertionError(f"expected {size[0]}x{size[1]}, got {image.size[0]}x{image.size[1]}")
    pixels = np.asarray(image, dtype=np.float32)
    if not np.isfinite(pixels).all() or pixels.max() == 0:
        raise AssertionError("the image is blank")
