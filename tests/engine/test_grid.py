"""X/Y/Z grids without a cluster: axes as a user types them, the jobs they make, and a grid run locally
into the gallery that can be re-run from the grid image."""

from __future__ import annotations

import pytest
from PIL import Image

from engine.api import GenerationRequest
from engine.cli import main
from engine.grid import GRID_CHUNK, GridError, GridRun, parse_axis, plan_from_recipe, plan_grid, read_recipe, run_local
from engine.library import Library
from engine.metadata import read_metadata


def base(**kw) -> GenerationRequest:
    fields = dict(prompt="a red cat <lora:ink:0.5>", model="/m/a.safetensors", steps=2, width=64, height=64, seed=5)
    fields.update(kw)
    return GenerationRequest(**fields)


def test_axes_expand_into_one_job_per_cell_x_fastest():
    plan = plan_grid(base(), parse_axis("cfg=3, 7.5"), parse_axis("seed=10-12"), parse_axis("sampler=euler,DDIM"))
    assert plan.shape == (2, 3, 2) and len(plan.jobs) == 12
    first, second, last = plan.jobs[0], plan.jobs[1], plan.jobs[-1]
    assert (first.request.guidance_scale, first.request.seed, first.request.sampler) == (3.0, 10, "Euler")
    assert (second.request.guidance_scale, second.request.seed) == (7.5, 10)
    assert (last.request.guidance_scale, last.request.seed, last.request.sampler) == (7.5, 12, "DDIM")
    assert len({j.id for j in plan.jobs}) == 12


def test_prompt_sr_size_lora_and_model_axes_change_what_a_user_expects():
    plan = plan_grid(base(), parse_axis('prompt-sr=red,"deep blue"'), parse_axis("size=64x64,128x64"))
    prompts = [j.request.prompt for j in plan.jobs]
    assert prompts[:2] == ["a red cat <lora:ink:0.5>", "a deep blue cat <lora:ink:0.5>"]
    assert (plan.jobs[2].request.width, plan.jobs[2].request.height) == (128, 64)
    lora = plan_grid(base(), parse_axis("lora=0,1.25"))
    assert [j.request.prompt for j in lora.jobs] == ["a red cat <lora:ink:0>", "a red cat <lora:ink:1.25>"]
    named = plan_grid(base(), parse_axis("lora=glow:0.3"))
    assert named.jobs[0].request.prompt.endswith("<lora:glow:0.3>")
    models = plan_grid(base(), parse_axis("model=/m/a.safetensors,/m/b"))
    assert [j.request.model for j in models.jobs] == ["/m/a.safetensors", "/m/b"]


@pytest.mark.parametrize("text, says", [
    ("colour=1,2", "AXIS one of"),
    ("seed=one", "not a valid value"),
    ("sampler=Heun 9", "not a valid value"),
    ("size=64by64", "not a valid value"),
    ("steps=", "at least one value"),
])
def test_bad_axis_text_is_one_plain_line(text, says):
    with pytest.raises(GridError, match=says) as info:
        parse_axis(text)
    assert "\n" not in str(info.value)


def test_a_cell_the_request_refuses_and_a_search_not_in_the_prompt_are_reported_before_running():
    with pytest.raises(GridError, match="steps=500"):
        plan_grid(base(), parse_axis("steps=2,500"))
    with pytest.raises(GridError, match="not in the prompt"):
        plan_grid(base(), parse_axis("prompt-sr=dog,cat"))
    with pytest.raises(GridError, match="repeat"):
        plan_grid(base(), parse_axis("seed=1,2"), parse_axis("seed=3"))


def test_local_grid_saves_each_image_with_its_settings_and_a_grid_that_re_runs(tiny_models, shared_engine, tmp_path):
    model = str(tiny_models.get("sd15"))
    plan = plan_grid(GenerationRequest(prompt="a lighthouse", model=model, steps=2, width=64, height=64, seed=3),
                     parse_axis("cfg=2,6"), parse_axis("seed=3,4"))
    with Library(tmp_path / "gallery") as gallery:
        run = GridRun(plan, library=gallery)
        run_local(plan, shared_engine, run)
        grid_path = run.finish()
        entries = gallery.query()
    assert len(entries) == 5 and sum(e.path == grid_path.name for e in entries) == 1
    for job in plan.jobs:
        (path,) = run.paths[job.id]
        meta = read_metadata(path)
        assert (meta.fields["seed"], meta.fields["guidance_scale"]) == (job.request.seed, job.request.guidance_scale)
        assert meta.extra.get("Grid job") == job.id
    grid = Image.open(grid_path)
    assert grid.width > 2 * 128 and grid.height > 2 * 128  # two columns, two rows, labels and a legend
    again = plan_from_recipe(read_recipe(grid_path))
    assert [j.request for j in again.jobs] == [j.request for j in plan.jobs]
    assert GRID_CHUNK in grid.text


def test_saving_is_idempotent_by_job_id(tiny_models, shared_engine, tmp_path):
    plan = plan_grid(GenerationRequest(prompt="a bell", model=str(tiny_models.get("sd15")), steps=2, width=64,
                                       height=64, seed=1), parse_axis("seed=1"))
    result = shared_engine.generate(plan.jobs[0].request)
    run = GridRun(plan, out=tmp_path)
    assert run.save(plan.jobs[0], result) and run.save(plan.jobs[0], result) is None
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_cli_grid_prints_the_grid_last_and_bad_input_in_one_line(tiny_models, tmp_path, capsys):
    model = str(tiny_models.get("sd15"))
    code = main(["grid", "--model", model, "--prompt", "a kite", "--steps", "2", "--width", "64", "--height", "64",
                 "--x", "seed=1,2", "--out", str(tmp_path), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.split()
    assert len(lines) == 3 and "grid" in lines[-1] and read_recipe(lines[-1])["axes"][0] == "seed=1,2"
    code = main(["grid", "--model", model, "--prompt", "a kite", "--x", "cfg=a"])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "cfg" in err
