"""Fixtures the engine tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``built(name, layout=None)``: the path of the family test model ``name`` (``easel make-test-model
    --list``) written in ``layout`` (default: its first, a diffusers folder for the generators), once per
    test module."""
    from engine import families

    root = tmp_path_factory.mktemp("built")
    paths: dict[tuple[str, str], Path] = {}

    def get(name: str, layout: str | None = None) -> Path:
        _family, model = families.test_models()[name]
        layout = layout or model.layouts[0]
        if (name, layout) not in paths:
            paths[(name, layout)] = Path(model.write(root / layout / name, layout, 0))
        return paths[(name, layout)]

    return get


@pytest.fixture(scope="module")
def engine():
    """One CPU Engine for the test module."""
    from engine.engine import Engine

    return Engine(device="cpu")
