"""DeepFloyd IF (Imagen's cascade) from local folders: detected, run as one job through Engine.generate with
per-stage progress, cancellable in any stage, reproducible from the PNG, and plain errors for partial folders."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import Cancelled, GenerationRequest, InvalidRequest, ModelError, Mode, UnsafeModelFile, UnsupportedModel
from engine.cli import main
from engine.families import capabilities, defaults as family_defaults
from engine.files.probe import check_model, inspect_model


@pytest.fixture(scope="module")
def cascade(tmp_path_factory) -> Path:
    """The stage I folder of a tiny cascade (IF-I-tiny, IF-II-tiny, x4-upscaler-tiny side by side)."""
    from engine.families.deepfloyd_if.testmodel import make_cascade_test_model

    return make_cascade_test_model(tmp_path_factory.mktemp("cascade") / "models")


def _copy_cascade(src_stage1: Path, dest: Path, upscaler: bool = True) -> Path:
    dest.mkdir(parents=True)
    for folder in src_stage1.parent.iterdir():
        if upscaler or "x4" not in folder.name:
            shutil.copytree(folder, dest / folder.name)
    return dest / src_stage1.name


def _request(model: Path, **changes) -> GenerationRequest:
    fields = dict(prompt="a lighthouse at dusk", model=str(model), seed=3, steps=2, guidance_scale=5.0,
                  width=256, height=256)
    fields.update(changes)
    return GenerationRequest(**fields)


def test_each_stage_is_recognised_and_stage_two_alone_points_to_stage_one(cascade):
    info = check_model(cascade)
    assert (info.kind, info.family, info.variant, info.usable) == ("checkpoint", "deepfloyd-if", "cascade", True)
    assert family_defaults(info)["width"] == 1024  # the x4 folder completes the cascade: 64 -> 256 -> 1024
    assert "sampler" not in capabilities(info).parameters and "strength" not in capabilities(info).parameters

    stage2 = inspect_model(cascade.parent / "IF-II-tiny")
    assert stage2.problem == "this is DeepFloyd IF stage II: pick the stage I folder next to it (IF-I-tiny)"
    with pytest.raises(UnsupportedModel, match="pick the stage I folder"):
        check_model(cascade.parent / "IF-II-tiny")

    x4 = check_model(cascade.parent / "x4-upscaler-tiny")
    assert (x4.kind, x4.family, x4.format, x4.problem, x4.upscaler) == ("upscaler", "sd-x4-upscaler", "diffusers",
                                                                         None, True)


def test_partial_folders_get_one_plain_line(tmp_path, cascade):
    def problem(path: Path) -> str:
        info = inspect_model(path)
        assert info.problem and "\n" not in info.problem
        return info.problem

    alone = tmp_path / "alone" / "IF-I-tiny"
    shutil.copytree(cascade, alone)
    assert "needs its stage II folder" in problem(alone)
    with pytest.raises(ModelError, match="needs its stage II folder"):
        check_model(alone)

    stage1 = _copy_cascade(cascade, tmp_path / "parts")
    root = stage1.parent
    for weights in (stage1 / "unet").glob("*.safetensors"):
        weights.unlink()
    (stage1 / "tokenizer" / "tokenizer.json").unlink()
    assert problem(stage1) == ("incomplete DeepFloyd IF folder: missing unet/ weights, "
                               "tokenizer/ vocab files (tokenizer.json, spiece.model, or vocab.json + merges.txt)")

    (root / "IF-II-tiny" / "image_noising_scheduler" / "scheduler_config.json").unlink()
    good = _copy_cascade(cascade, tmp_path / "bad-stage2")
    (good.parent / "IF-II-tiny" / "image_noising_scheduler" / "scheduler_config.json").unlink()
    assert problem(good) == ("its DeepFloyd IF stage II folder next to it (IF-II-tiny) cannot be used: incomplete "
                             "DeepFloyd IF stage II folder: missing image_noising_scheduler/scheduler_config.json")

    x4 = root / "x4-upscaler-tiny"
    shutil.rmtree(x4 / "low_res_scheduler")
    assert problem(x4) == "incomplete x4 upscaler folder: missing low_res_scheduler/scheduler_config.json"


def test_pickle_only_weights_are_refused_and_never_opened(tmp_path, cascade):
    stage1 = _copy_cascade(cascade, tmp_path / "pickled")
    unet = stage1 / "unet"
    for weights in unet.glob("*.safetensors"):
        weights.unlink()
    torch.save({"w": torch.zeros(1)}, unet / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeModelFile, match="pickle-based checkpoint"):
        check_model(stage1)


def test_the_cascade_runs_as_one_job_with_rising_stages_and_previews(shared_engine, cascade):
    events = []
    result = shared_engine.generate(_request(cascade, steps=4), on_progress=events.append)
    image = result.images[0]
    assert image.size == (256, 256) and np.asarray(image).std() > 5  # an image, not a flat or black fill
    stages = [e.stage for e in events]
    assert stages == sorted(stages) and set(stages) == {1, 2, 3} and {e.stages for e in events} == {3}
    names = {e.stage: e.stage_name for e in events}
    assert names == {1: "Stage I 16 px", 2: "Stage II 64 px", 3: "Upscale x4"}  # 64 / 256 px with the real models
    per_stage = {k: [(e.step, e.total) for e in events if e.stage == k] for k in (1, 2)}
    assert per_stage == {1: [(1, 4), (2, 4), (3, 4), (4, 4)], 2: [(1, 2), (2, 2)]}  # stage II runs half the steps
    assert all(e.preview is not None for e in events if e.step == e.total)  # pixel stages preview for free
    assert dict(result.params) == {"Stage II": "IF-II-tiny", "Stage III": "x4-upscaler-tiny"}
    assert result.model.family == "deepfloyd-if" and result.settings.device == "cpu"


def test_cancel_in_stage_two_stops_within_one_step_and_the_engine_stays_ready(shared_engine, cascade):
    cancel = threading.Event()
    seen = []

    def on_progress(p):
        seen.append((p.stage, p.step))
        if p.stage == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        shared_engine.generate(_request(cascade, steps=4), on_progress=on_progress, cancel=cancel)
    assert seen[-1] == (2, 1) and (3, 1) not in seen
    again = shared_engine.generate(_request(cascade, width=64, height=64, steps=1), on_progress=None)
    assert again.images[0].size == (64, 64)


def test_cli_generate_writes_metadata_and_each_image_of_a_batch_regenerates_identically(tmp_path, capsys, cascade):
    first = tmp_path / "a.png"
    code = main(["generate", "--model", str(cascade), "--prompt", "an old harbour", "--steps", "2", "--seed", "11",
                 "--cfg", "4", "--width", "256", "--height", "256", "--batch", "2", "--out", str(first)])
    assert code == 0, capsys.readouterr().err
    second = tmp_path / "a-2.png"
    from engine.metadata import read_metadata

    meta = read_metadata(second)
    assert (meta.fields["prompt"], meta.fields["seed"], meta.fields["steps"]) == ("an old harbour", 12, 2)
    assert meta.model_name == "IF-I-tiny" and meta.extra["Stage II"] == "IF-II-tiny"
    with Image.open(second) as im:
        assert "Stage III: x4-upscaler-tiny" in im.text["parameters"]
        assert json.loads(im.text["easel"])["model"]["family"] == "deepfloyd-if"
    again = tmp_path / "b.png"
    assert main(["regenerate", str(second), "--model", str(cascade), "--out", str(again)]) == 0
    a, b = np.asarray(Image.open(second)), np.asarray(Image.open(again))
    assert np.array_equal(a, b) and not np.array_equal(a, np.asarray(Image.open(tmp_path / "a-1.png")))


def test_sizes_off_the_cascade_grid_are_resized_with_a_notice_and_other_modes_refused(shared_engine, cascade):
    result = shared_engine.generate(_request(cascade, width=200, height=136, steps=1))
    assert result.images[0].size == (200, 136)
    assert any("resized to 200x136" in n for n in result.notices)
    with pytest.raises(InvalidRequest, match="makes new images only"):
        shared_engine.generate(_request(cascade, mode=Mode.IMG2IMG, init_image=Image.new("RGB", (64, 64))))


def test_without_its_x4_folder_the_cascade_ends_at_stage_two(tmp_path, cascade):
    from engine.engine import Engine

    stage1 = _copy_cascade(cascade, tmp_path / "two", upscaler=False)
    assert family_defaults(check_model(stage1))["width"] == 256
    events = []
    result = Engine(device="cpu").generate(_request(stage1, width=64, height=64), on_progress=events.append)
    assert result.images[0].size == (64, 64) and {e.stages for e in events} == {2}
    assert dict(result.params) == {"Stage II": "IF-II-tiny"}


def test_a_released_layout_loads(tmp_path, cascade):
    """As downloaded with variant="fp16": only *.fp16.safetensors weights, sharded T5 with an index, and a
    SentencePiece spiece.model instead of tokenizer.json (converted when loaded)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    import io

    from engine.engine import Engine

    stage1 = _copy_cascade(cascade, tmp_path / "released", upscaler=False)
    for part in ("unet", "text_encoder"):
        for weights in (stage1 / part).glob("*.safetensors"):
            weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    tokenizer = stage1 / "tokenizer"
    (tokenizer / "tokenizer.json").unlink()
    model = io.BytesIO()
    from engine.testencoders import CORPUS

    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(list(CORPUS) * 8), model_writer=model,
                                             vocab_size=60, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
                                             bos_id=-1, minloglevel=2)
    (tokenizer / "spiece.model").write_bytes(model.getvalue())
    config = json.loads((tokenizer / "tokenizer_config.json").read_text())
    config.pop("tokenizer_file", None)
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(config))
    assert check_model(stage1).usable
    result = Engine(device="cpu").generate(_request(stage1, width=64, height=64, steps=1))
    assert np.asarray(result.images[0]).std() > 5


def test_unload_frees_every_stage(cascade):
    from engine.engine import Engine

    engine = Engine(device="cpu")
    engine.generate(_request(cascade, width=64, height=64, steps=1))
    runner = engine.runner
    stages = [weakref.ref(p.unet) for p in runner.pipelines()]
    del runner
    engine.unload()
    gc.collect()
    assert [ref() for ref in stages] == [None, None, None]


def test_the_model_library_lists_each_stage_and_notices_a_stage_added_later(tmp_path, cascade):
    from engine.models import ModelLibrary

    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(cascade, models / "IF-I-tiny")
    library = ModelLibrary([str(models)], include_defaults=False, state_dir=tmp_path / "state")
    (entry,) = library.scan()
    assert not entry.usable and "needs its stage II folder" in entry.reason
    for sibling in ("IF-II-tiny", "x4-upscaler-tiny"):
        shutil.copytree(cascade.parent / sibling, models / sibling)
    again = ModelLibrary([str(models)], include_defaults=False, state_dir=tmp_path / "state")  # the cache on disk
    found = {e.name: (e.kind, e.family, e.usable) for e in again.scan()}
    assert found == {"IF-I-tiny": ("checkpoint", "deepfloyd-if", True),
                     "IF-II-tiny": ("unknown", "deepfloyd-if", False),
                     "x4-upscaler-tiny": ("upscaler", "sd-x4-upscaler", True)}


def test_stages_in_the_hugging_face_cache_find_each_other(tmp_path, cascade):
    hub = tmp_path / "hub"
    snaps = {}
    for repo, folder in (("IF-I-XL-v1.0", "IF-I-tiny"), ("IF-II-L-v1.0", "IF-II-tiny"),
                         ("stable-diffusion-x4-upscaler", "x4-upscaler-tiny")):
        org = "stabilityai" if "x4" in repo else "DeepFloyd"
        snap = hub / f"models--{org}--{repo}" / "snapshots" / "0123abc"
        shutil.copytree(cascade.parent / folder, snap)
        (hub / f"models--{org}--{repo}" / "refs").mkdir()
        (hub / f"models--{org}--{repo}" / "refs" / "main").write_text("0123abc")
        snaps[repo] = snap
    from engine.families.deepfloyd_if.files import find_cascade

    found = find_cascade(snaps["IF-I-XL-v1.0"])
    assert (found.stage2, found.upscaler) == (snaps["IF-II-L-v1.0"], snaps["stable-diffusion-x4-upscaler"])
    assert check_model(snaps["IF-I-XL-v1.0"]).usable
