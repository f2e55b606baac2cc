"""The real Engine and the UI tests' FakeEngine both satisfy EngineProtocol, member for member, with
the same parameters: a fake that drifts from the engine fails here, not in a UI test that passes
against something the app never runs."""

from __future__ import annotations

import inspect

import pytest

from engine.protocol import EngineProtocol

MEMBERS = ("loaded", "runtime", "load", "unload", "generate", "upscale")


def _engines():
    from engine.engine import Engine
    from tests.desktop_app.fakes import FakeEngine

    return [Engine, FakeEngine]


def _all_engines():
    from engine.farm.remote import RemoteEngine

    return [*_engines(), RemoteEngine]


@pytest.mark.parametrize("cls", _all_engines(), ids=lambda c: c.__name__)
def test_engine_classes_have_every_protocol_member_with_its_parameters(cls):
    for name in MEMBERS:
        wanted = getattr(EngineProtocol, name)
        have = getattr(cls, name, None)
        assert have is not None, f"{cls.__name__} lacks {name}"
        if isinstance(wanted, property):
            assert isinstance(have, property), f"{cls.__name__}.{name} must be a property"
            continue
        want_params = list(inspect.signature(wanted).parameters)
        have_params = list(inspect.signature(have).parameters)
        assert have_params[: len(want_params)] == want_params, (cls.__name__, name, have_params)


@pytest.mark.parametrize("cls", _engines(), ids=lambda c: c.__name__)
def test_instances_are_engine_protocols(cls):
    engine = cls(device="cpu")
    assert isinstance(engine, EngineProtocol)
    assert engine.loaded is None and engine.runtime is None
