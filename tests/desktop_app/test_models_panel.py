"""The models panel and LoRA picker on a fake A1111 install; engine notices reach the banner."""

from __future__ import annotations

import pickle
from pathlib import Path

from PySide6.QtCore import Qt

from engine.testaddons import make_kind_file
from tests.desktop_app.conftest import screenshot


def _install(root):
    w = root / "stable-diffusion-webui"
    (w / "webui.py").parent.mkdir(parents=True)
    (w / "webui.py").write_text("# A1111")
    sd = w / "models" / "Stable-diffusion"
    make_kind_file(sd / "dreamy-v1.safetensors", "checkpoint", "sd1")
    make_kind_file(sd / "sd3-medium.safetensors", "sd3")
    (sd / "old-model.ckpt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))
    make_kind_file(w / "models" / "Lora" / "detail-tweaker.safetensors", "lora", "sd1")
    make_kind_file(w / "models" / "Lora" / "xl-style.safetensors", "lora", "sdxl")
    make_kind_file(w / "models" / "VAE" / "vae-ft-mse.safetensors", "vae")
    make_kind_file(w / "embeddings" / "easynegative.safetensors", "embedding", "sd1")
    return w


def test_models_panel_lists_an_a1111_install_and_inserts_loras(make_studio, fake_engine, data_dir, tmp_path, qtbot):
    install = _install(tmp_path)
    studio = make_studio(data_dir, fake_engine)
    studio.actions.add_model_folder(str(install))
    qtbot.waitUntil(lambda: any(e.name == "detail-tweaker" for e in studio.catalog.entries), timeout=30_000)
    window = studio.window
    window.show_models()
    panel = window.models_panel
    tabs = [panel.tabs.tabText(i) for i in range(panel.tabs.count())]
    assert tabs[:4] == ["Checkpoints (1)", "LoRAs (2)", "Embeddings (1)", "VAEs (1)"]
    assert tabs[-1] == "Cannot use (2)"
    bad = panel.trees["Cannot use"]
    reasons = {bad.topLevelItem(i).text(0): bad.topLevelItem(i).text(3) for i in range(bad.topLevelItemCount())}
    assert "this SD 3.5 file holds the transformer but not its CLIP-L, CLIP-G, VAE" in reasons["sd3-medium"]
    assert reasons["old-model"] == "pickle file: convert it to .safetensors"

    # The picker model only lists the usable checkpoint; the LoRA picker lists both LoRAs.
    assert [m.name for m in studio.catalog.usable] == ["dreamy-v1"]
    assert window.prompt_panel.lora_picker.text() == "Add LoRA (2)"

    studio.params.prompt = "a castle at night"
    loras = panel.trees["LoRAs"]
    panel.tabs.setCurrentWidget(loras)
    item = loras.findItems("detail-tweaker", Qt.MatchFlag.MatchExactly)[0]
    loras.setCurrentItem(item)
    assert panel.insert_button.isEnabled() and not panel.convert_button.isEnabled()
    panel.insert_button.click()
    assert studio.params.prompt == "a castle at night <lora:detail-tweaker:0.8>"
    assert window.prompt_panel.prompt_edit.toPlainText().endswith("<lora:detail-tweaker:0.8>")
    window.prompt_panel.lora_picker.menu_.actions()[1].trigger()  # the other LoRA, from the prompt panel
    assert studio.params.prompt.endswith("<lora:xl-style:0.8>")

    panel.tabs.setCurrentWidget(bad)
    bad.setCurrentItem(bad.findItems("old-model", Qt.MatchFlag.MatchExactly)[0])
    assert panel.convert_button.isEnabled()
    window.resize(1280, 900)
    path = screenshot(window, "models-panel.png")
    assert path.exists()


def test_engine_notices_are_shown(make_studio, fake_engine, fake_model, data_dir, qtbot):
    from engine.api import Result

    studio = make_studio(data_dir, fake_engine)
    original = fake_engine.generate

    def generate(request, on_progress=None, cancel=None):
        result = original(request, on_progress, cancel)
        return Result(**{**result.__dict__, "notices": (
            "The GPU ran out of memory with the “fast” memory preset; Easel finished the job with “low” "
            "and will use it for this model from now on.",)})

    fake_engine.generate = generate
    notices = []
    studio.reporter.notice_posted.connect(notices.append)
    studio.params.model = str(fake_model)
    studio.params.steps = 2
    job = studio.actions.generate()
    qtbot.waitUntil(lambda: job.status.value == "done", timeout=30_000)
    assert notices and "ran out of memory" in notices[0]
    qtbot.waitUntil(lambda: studio.window.banner.isVisible(), timeout=5_000)
    screenshot(studio.window, "oom-notice.png")


def test_download_dialog_downloads_cancels_and_resumes(make_studio, fake_engine, data_dir, tmp_path, qtbot,
                                                      tiny_models, monkeypatch):
    from tests.engine.test_download import BIG, REPO, LoopbackHub

    hub = LoopbackHub(Path(tiny_models.get()), stall=BIG)
    try:
        # The child process reads these; this process stays offline (huggingface_hub read them at import).
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "120")
        studio = make_studio(data_dir, fake_engine)
        studio.window.show_download_dialog()
        dialog = studio.window.download_dialog
        dialog.repo_combo.setEditText(REPO)
        dialog.start_button.click()
        downloads = studio.actions.downloads
        from tests.engine.test_download import partial_of

        part = partial_of(hub, tmp_path / "hub", BIG)
        qtbot.waitUntil(lambda: downloads.state == "failed" or (part.exists() and part.stat().st_size > 0
                                                                and dialog.progress.value() > 0), timeout=60_000)
        assert downloads.state != "failed", downloads.message
        assert dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()
        screenshot(dialog, "download-dialog.png")
        dialog.cancel_button.click()
        qtbot.waitUntil(lambda: downloads.state == "cancelled", timeout=30_000)
        assert "resumes" in dialog.status_label.text()
        hub.release.set()
        dialog.start_button.click()
        qtbot.waitUntil(lambda: downloads.state in ("done", "failed"), timeout=120_000)
        assert downloads.state == "done", downloads.message
        assert any(r[2] for r in hub.requests if r[0] == "GET" and r[1].endswith(BIG))  # resumed
        qtbot.waitUntil(lambda: any(m.usable and "models--acme--tiny-sd" in m.path for m in studio.catalog.models),
                        timeout=30_000)
        qtbot.waitUntil(lambda: "models--acme--tiny-sd" in studio.params.model, timeout=10_000)
        dialog.close()
    finally:
        hub.close()
