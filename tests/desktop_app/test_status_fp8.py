"""The status bar says when the transformer / T5 run from fp8 storage (engine.core.precision)."""

from __future__ import annotations

from types import SimpleNamespace

from desktop_app.bridge import EngineBridge
from desktop_app.state.status import EngineStatus
from desktop_app.ui.status_bar import StatusBarWidget
from engine.api import RuntimeSettings


def test_the_status_bar_shows_fp8_storage(qtbot):
    info = SimpleNamespace(name="flux1-dev-fp8", kind="checkpoint", family="flux1", variant="dev")
    stored = RuntimeSettings("cuda", "bfloat16", "low", fp8_storage=("text_encoder_2", "transformer"))
    plain = RuntimeSettings("cuda", "bfloat16", "fast")
    bar = StatusBarWidget(EngineStatus())
    qtbot.addWidget(bar)
    bar._on_status_runtime_changed(EngineBridge._runtime_info(SimpleNamespace(settings=stored, model=info)))
    assert bar.dtype_label.text() == "dtype: bfloat16 · fp8 storage"
    bar.resize(900, 28)
    bar.show()
    bar.grab().save("build/screenshots/status_fp8.png")
    bar._on_status_runtime_changed(EngineBridge._runtime_info(SimpleNamespace(settings=plain, model=info)))
    assert bar.dtype_label.text() == "dtype: bfloat16"
