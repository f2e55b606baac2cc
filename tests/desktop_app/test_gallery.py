"""The gallery in the window: results land on top, search, favourites, delete + undo, restore settings,
dropped images from other tools, outside edits while running, a full disk, a second instance."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.library import Filter, Library, SaveFailed
from tests.desktop_app.conftest import screenshot
from tests.library_helpers import make_result

ROOT = Path(__file__).resolve().parents[2]
A1111 = ("a lighthouse at dusk, (golden hour:1.2)\nNegative prompt: blurry, lowres\n"
         "Steps: 31, Sampler: DPM++ 3M SDE, Schedule type: Karras, CFG scale: 6.5, Seed: 4242, Size: 512x768, "
         "Model hash: 6ce0161689, Model: fake-model")


def _generate(studio, qtbot, prompt, seed, batch=1):
    p = studio.params
    p.prompt, p.steps, p.width, p.height, p.batch_count = prompt, 2, 64, 64, batch
    p.seed_mode, p.seed = "fixed", seed
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()


def _prompts(studio):
    model = studio.gallery.model
    return [model.entry_at(r).prompt for r in range(model.rowCount())]


def test_generations_land_on_top_search_narrows_and_delete_can_be_undone(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    panel = studio.window.gallery_panel
    for n, prompt in enumerate(("a castle on a hill", "a red barn at dusk", "castle ruins in fog")):
        _generate(studio, qtbot, prompt, seed=10 + n)
        assert _prompts(studio)[0] == prompt  # the newest is on top
    assert studio.gallery.current.prompt == "castle ruins in fog"
    qtbot.waitUntil(lambda: all(studio.gallery.model.data(studio.gallery.model.index(r), studio.gallery.model.ThumbnailRole)
                                is not None for r in range(3)), timeout=10_000)

    qtbot.keyClicks(panel.search_edit, "castle")
    qtbot.waitUntil(lambda: _prompts(studio) == ["castle ruins in fog", "a castle on a hill"], timeout=5000)
    assert panel.count_label.text() == "2 images"
    panel.search_edit.clear()
    qtbot.waitUntil(lambda: len(_prompts(studio)) == 3, timeout=5000)

    # Select the barn and press Del: it goes to the trash; Ctrl+Z brings it back.
    view = panel.view
    view.setFocus()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(view.model().index(1)).center())
    assert studio.gallery.current.prompt == "a red barn at dusk"
    barn = studio.gallery.absolute(studio.gallery.current)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: len(_prompts(studio)) == 2, timeout=5000)
    assert not barn.exists() and list((data_dir / "outputs" / ".trash").glob("*.png"))
    assert panel.undo_button.isEnabled()
    banner = studio.window.banner
    assert banner.isVisible() and "moved to the trash" in banner.message.text()
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: _prompts(studio) == ["castle ruins in fog", "a red barn at dusk", "a castle on a hill"], timeout=5000)
    assert barn.exists() and not panel.undo_button.isEnabled()
    assert not banner.isVisible()  # "moved to the trash… Ctrl+Z to undo" no longer holds

    # Click the castle, favourite it with F, filter to favourites.
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(view.model().index(2)).center())
    assert [e.prompt for e in panel.selected()] == ["a castle on a hill"]
    qtbot.keyClick(view, Qt.Key.Key_F)
    qtbot.waitUntil(lambda: studio.gallery.current.favourite, timeout=5000)
    panel.favourites_button.click()
    qtbot.waitUntil(lambda: _prompts(studio) == ["a castle on a hill"], timeout=5000)
    panel.favourites_button.click()
    qtbot.waitUntil(lambda: len(_prompts(studio)) == 3, timeout=5000)
    menu = panel.build_menu(studio.gallery.current)
    labels = [a.text() for a in menu.actions() if a.text()]
    for expected in ("Restore settings", "Edit in canvas", "Use as img2img source", "Use as inpaint source", "Copy prompt", "Copy seed",
                     "Copy image", "Unfavourite", "Open containing folder", "Export…", "Move to the trash"):
        assert expected in labels
    screenshot(studio.window, "gallery.png")


def test_clearing_a_search_shows_everything_including_what_changed_meanwhile(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    panel = studio.window.gallery_panel
    for n, prompt in enumerate(("a castle on a hill", "a red barn at dusk")):
        _generate(studio, qtbot, prompt, seed=20 + n)
    panel.search_edit.setText("castle")
    qtbot.waitUntil(lambda: _prompts(studio) == ["a castle on a hill"], timeout=5000)
    # Made while the search shows only castles: it is not listed now, but is there once the search is cleared.
    _generate(studio, qtbot, "a blue boat", seed=30)
    assert _prompts(studio) == ["a castle on a hill"]
    panel.search_edit.clear()
    qtbot.waitUntil(lambda: _prompts(studio) == ["a blue boat", "a red barn at dusk", "a castle on a hill"], timeout=5000)
    assert panel.count_label.text() == "3 images"

    # Nothing written since: clearing a search shows the whole gallery at once, without a query.
    panel.search_edit.setText("barn")
    qtbot.waitUntil(lambda: _prompts(studio) == ["a red barn at dusk"] and not studio.gallery._tasks, timeout=5000)
    panel.search_edit.clear()
    assert _prompts(studio) == ["a blue boat", "a red barn at dusk", "a castle on a hill"]

    # Trashed from inside a search: gone from the whole gallery too once the search is cleared.
    panel.search_edit.setText("boat")
    qtbot.waitUntil(lambda: _prompts(studio) == ["a blue boat"] and not studio.gallery._tasks, timeout=5000)
    studio.gallery.trash([studio.gallery.model.entry_at(0)])
    qtbot.waitUntil(lambda: _prompts(studio) == [] and not studio.gallery._tasks, timeout=5000)
    panel.search_edit.clear()
    qtbot.waitUntil(lambda: _prompts(studio) == ["a red barn at dusk", "a castle on a hill"], timeout=5000)


def test_gallery_survives_a_restart_and_sees_files_added_while_running(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _generate(studio, qtbot, "kept across restarts", seed=5)
    studio.window.close()
    again = make_studio(data_dir, fake_engine)
    assert _prompts(again) == ["kept across restarts"]
    # An image from another tool copied into the folder while Easel runs shows up (folder watcher).
    info = PngInfo()
    info.add_text("parameters", A1111)
    Image.new("RGB", (64, 96), "navy").save(data_dir / "outputs" / "copied in.png", pnginfo=info)
    qtbot.waitUntil(lambda: "a lighthouse at dusk, (golden hour:1.2)" in _prompts(again), timeout=10_000)
    (data_dir / "outputs" / "copied in.png").unlink()
    qtbot.waitUntil(lambda: _prompts(again) == ["kept across restarts"], timeout=10_000)


def test_restore_settings_fills_the_prompt_panel(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _generate(studio, qtbot, "a knight\nwith a second line", seed=777)
    p = studio.params
    p.prompt, p.seed_mode, p.steps, p.sampler = "something else", "random", 30, "DDIM"
    panel = studio.window.gallery_panel
    with qtbot.waitSignal(studio.actions.settings_restored, timeout=5000):
        panel.details.restore_button.click()
    assert (p.prompt, p.seed_mode, p.seed, p.steps, p.sampler) == ("a knight\nwith a second line", "fixed", 777, 2, "Euler a")
    assert studio.window.prompt_panel.prompt_edit.toPlainText() == "a knight\nwith a second line"
    assert p.model == str(fake_model)

    # Use as img2img source: the image opens on the canvas, and the next job is img2img from it, at its size.
    name = studio.gallery.absolute(studio.gallery.current).name
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=5000):
        panel.edit_in_canvas(studio.gallery.current, "img2img")
    window = studio.window
    assert window.canvas_panel.showing_canvas and studio.actions.document.source == name
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    request = fake_engine.calls[-1]
    assert request.mode.value == "img2img" and request.init_image.size == (64, 64)
    edit = window.canvas_panel.edit_settings
    assert edit.mode_combo.currentText() == "Image to image" and edit.strength_spin.isEnabled()
    assert name in window.canvas_panel.caption.text()  # says what it edits: that file
    # Back to New image: the next job is txt2img again, and the editing settings are off.
    window.canvas_panel.candidate_bar.discard_button.click()
    edit.mode_combo.setCurrentIndex(edit.mode_combo.findData("txt2img"))
    assert not edit.strength_spin.isEnabled() and name not in window.canvas_panel.caption.text()
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        studio.actions.generate()
    assert fake_engine.calls[-1].mode.value == "txt2img"
    # Use as inpaint source (the details pane's "Edit in canvas" too): the canvas, in inpaint mode.
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=5000):
        panel.edit_in_canvas(studio.gallery.current, "inpaint")
    assert p.edit_mode == "inpaint" and window.canvas_panel.showing_canvas
    p.edit_mode = "txt2img"
    with qtbot.waitSignal(studio.actions.canvas.opened, timeout=5000):
        panel.details.edit_button.click()
    assert p.edit_mode == "inpaint"


def test_dropping_an_a1111_png_shows_it_and_restores_its_settings(make_studio, data_dir, fake_engine, fake_model, tmp_path, qtbot):
    studio = make_studio(data_dir, fake_engine)
    png = tmp_path / "from a1111.png"
    info = PngInfo()
    info.add_text("parameters", A1111)
    Image.new("RGB", (512, 768), "teal").save(png, pnginfo=info)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(png))])
    window = studio.window
    drop = QDropEvent(QPoint(400, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    qtbot.waitUntil(lambda: getattr(studio.gallery.current, "path", None) == png, timeout=5000)
    qtbot.waitUntil(lambda: window.canvas_panel.pixmap is not None and window.canvas_panel.pixmap.width() == 512, timeout=5000)
    details = window.gallery_panel.details
    assert details.restore_button.isVisible() and details.restore_button.isEnabled()
    studio.params.edit_mode = "inpaint"  # the canvas was being edited before
    with qtbot.waitSignal(studio.actions.settings_restored, timeout=5000):
        details.restore_button.click()
    p = studio.params
    assert p.edit_mode == "txt2img"  # Generate now remakes that image, not an inpaint of the canvas
    assert (p.prompt, p.negative_prompt, p.seed, p.steps, p.guidance_scale, p.width, p.height) == (
        "a lighthouse at dusk, (golden hour:1.2)", "blurry, lowres", 4242, 31, 6.5, 512, 768)
    assert p.sampler == "DPM++ SDE Karras"  # DPM++ 3M SDE is not in Easel: the nearest, flagged
    assert "not available" in window.banner.message.text()
    assert studio.gallery.model.rowCount() == 0  # shown, not imported until asked

    plain = tmp_path / "plain.png"
    Image.new("RGB", (64, 64)).save(plain)
    studio.actions.open_image(plain)
    qtbot.waitUntil(lambda: "no generation settings" in window.banner.message.text(), timeout=5000)
    assert not details.restore_button.isEnabled()


def test_a_full_disk_keeps_the_images_in_memory_with_save_as(make_studio, data_dir, fake_engine, fake_model, tmp_path, qtbot):
    def full_disk_saver(result, folder):
        raise SaveFailed("could not save the image in the library: No space left on device", [], [0], errno.ENOSPC)

    studio = make_studio(data_dir, fake_engine, saver=full_disk_saver)
    _generate(studio, qtbot, "precious", seed=3)
    model = studio.gallery.model
    assert model.rowCount() == 1 and model.data(model.index(0), model.UnsavedRole)
    assert "No space left on device" in studio.window.banner.message.text()
    assert list((data_dir / "outputs").glob("*.png")) == []
    item = studio.gallery.current
    target = tmp_path / "elsewhere.png"
    studio.gallery.save_unsaved(item, target)
    qtbot.waitUntil(lambda: model.rowCount() == 0, timeout=5000)
    with Image.open(target) as png:
        assert "precious" in png.text["parameters"]


def test_a_second_app_on_the_same_data_folder_says_so_and_exits(data_dir):
    owner = Library(data_dir / "outputs")
    try:
        proc = subprocess.run([sys.executable, "-m", "desktop_app", "--data-dir", str(data_dir)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    finally:
        owner.close()
    assert proc.returncode == 1
    assert "already using the library" in proc.stderr and "Traceback" not in proc.stderr


def test_library_reads_what_the_gallery_wrote_and_the_gallery_shows_what_the_library_wrote(
        make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _generate(studio, qtbot, "for the command line", seed=9)
    studio.window.close()
    with Library(data_dir / "outputs") as lib:
        found = lib.query(Filter(text="command"))
        assert [(e.prompt, e.seed, e.steps, e.width, e.height) for e in found] == [("for the command line", 9, 2, 64, 64)]
        # The other way round: an image the command line saved into the same library (as `easel generate` does)
        # is in the gallery the next time the app opens, newest on top, with its own settings.
        lib.save(make_result("saved by the command line", seed=4321, size=96))
    again = make_studio(data_dir, fake_engine)
    assert _prompts(again) == ["saved by the command line", "for the command line"]
    newest = again.gallery.model.entry_at(0)
    assert (newest.seed, newest.width, newest.height) == (4321, 96, 96)


def test_after_delete_the_next_image_is_selected_and_shown_and_a_second_delete_deletes_it(
        make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    for n, prompt in enumerate(("oldest", "middle", "newest")):
        _generate(studio, qtbot, prompt, seed=30 + n)
    panel = studio.window.gallery_panel
    view = panel.view
    view.setFocus()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(view.model().index(1)).center())
    assert studio.gallery.current.prompt == "middle"
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: _prompts(studio) == ["newest", "oldest"], timeout=5000)
    # The image that took its place is the one selected, shown and described.
    assert studio.gallery.current.prompt == "oldest"
    assert [e.prompt for e in panel.selected()] == ["oldest"]
    qtbot.waitUntil(lambda: "oldest" in panel.details.text.toPlainText(), timeout=5000)
    qtbot.waitUntil(lambda: "seed 30" in studio.window.canvas_panel.viewer_label.text(), timeout=5000)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: _prompts(studio) == ["newest"], timeout=5000)
    assert studio.gallery.current.prompt == "newest" and [e.prompt for e in panel.selected()] == ["newest"]


def test_a_search_that_hides_the_shown_image_clears_its_details(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _generate(studio, qtbot, "a castle", seed=1)
    _generate(studio, qtbot, "a red barn", seed=2)
    panel = studio.window.gallery_panel
    assert studio.gallery.current.prompt == "a red barn"
    qtbot.keyClicks(panel.search_edit, "castle")
    qtbot.waitUntil(lambda: _prompts(studio) == ["a castle"], timeout=5000)
    assert studio.gallery.current is None
    assert panel.details.title.text() == "No image selected"
    assert "a red barn" not in panel.details.text.toPlainText()


def test_variations_say_and_use_the_steps_they_run_with(make_studio, data_dir, fake_engine, fake_model, qtbot):
    studio = make_studio(data_dir, fake_engine)
    _generate(studio, qtbot, "a kite", seed=3)  # made with 2 steps
    window = studio.window
    dialog = window.show_variations_dialog(studio.actions.images.source_for(studio.gallery.current))
    assert "2 steps (the image's)" in dialog.note.text()
    dialog.reject()
    # The canvas stores no steps: the prompt panel's are used, and the dialog says so.
    studio.actions.document.set_image(Image.new("RGB", (64, 64), "red"), "a test")
    studio.params.steps = 9
    dialog = window.show_variations_dialog(studio.actions.images.canvas_source())
    assert "9 steps (the prompt panel's)" in dialog.note.text()
    dialog.count_spin.setValue(1)
    dialog.strength_slider.setValue(50)
    with qtbot.waitSignal(studio.queue.job_finished, timeout=10_000):
        dialog.make_button.click()
    assert fake_engine.calls[-1].steps == 9


def test_an_upscaled_image_is_described_as_an_upscale_not_img2img(make_studio, data_dir, fake_engine, fake_model,
                                                                  qtbot, tmp_path):
    from engine.api import GenerationRequest, ModelInfo, Result, RuntimeSettings, Timings
    from engine.metadata import png_info

    request = GenerationRequest(prompt="a kite", mode="img2img", init_image=Image.new("RGB", (16, 16)),
                                width=64, height=64, seed=3)
    result = Result(images=(Image.new("RGB", (64, 64)),), seeds=(3,), request=request,
                    model=ModelInfo("/m/x4", "x4", "checkpoint", "sd-x4-upscaler", "diffusers"), model_hash="",
                    settings=RuntimeSettings("cpu", "float32", "fast"), timings=Timings(),
                    params=(("Upscale by", "4"),))  # as the x4 runner records it
    path = tmp_path / "upscaled.png"
    result.images[0].save(path, pnginfo=png_info(result, 0, app_version="0.1.0"))
    studio = make_studio(data_dir, fake_engine)
    studio.gallery.import_files([path])
    qtbot.waitUntil(lambda: studio.gallery.model.rowCount() == 1, timeout=10_000)
    studio.gallery.set_current(studio.gallery.model.entry_at(0))
    details = studio.window.gallery_panel.details
    qtbot.waitUntil(lambda: "Postprocess upscale by: 4" in details.text.toPlainText(), timeout=10_000)
    text = details.text.toPlainText()
    assert "upscale" in text and "img2img" not in text
