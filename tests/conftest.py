"""Shared fixtures: tiny random-weight models built once per session, and a network guard."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any attempt to open a network connection; yields the list of attempts made."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[1:] if args else kwargs))
        raise NetworkUsed(f"network connection attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts


class TinyModels:
    """Builds each tiny model once (folder or single file) and hands out its path."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[tuple[str, bool], Path] = {}

    def get(self, family: str = "sd15", single_file: bool = False) -> Path:
        from engine.testmodels import make_test_model

        key = (family, single_file)
        if key not in self._built:
            dest = self.root / (f"{family}.safetensors" if single_file else family)
            self._built[key] = Path(make_test_model(dest, family=family, single_file=single_file, seed=0))
        return self._built[key]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def shared_engine():
    """One Engine for the session (models stay loaded between tests, as in the app)."""
    from engine.engine import Engine

    return Engine(device="cpu")
