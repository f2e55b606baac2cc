"""An embedding loaded for one model never leaks into another: single-file checkpoints share the
bundled CLIP tokenizer, and loading a textual-inversion embedding adds its token to the tokenizer of
the model that asked for it, not to the shared one."""

from __future__ import annotations

import numpy as np

from engine.api import GenerationRequest


def _req(model, prompt):
    return GenerationRequest(prompt=prompt, model=str(model), seed=5, steps=2, width=64, height=64, sampler="Euler")


def test_an_embedding_of_model_a_is_not_in_model_b(tmp_path, tiny_models):
    from engine.engine import Engine
    from engine.models import ModelLibrary
    from engine.testaddons import make_embedding
    from engine.testmodels import make_test_model
    from engine.tokenizers import bundled_tokenizer

    folder = tmp_path / "models"
    make_embedding(folder / "embeddings" / "fuzzyfox.safetensors", "sd15")
    a = tiny_models.get("sd15", single_file=True)
    b = make_test_model(tmp_path / "b.safetensors", family="sd15", single_file=True, seed=1)
    library = ModelLibrary([str(folder)], include_defaults=False)
    shared_size = len(bundled_tokenizer("clip"))

    engine = Engine(device="cpu", library=library, keep_models=0)
    with_embedding = engine.generate(_req(a, "a fox, fuzzyfox"))
    assert len(engine.runner.base.tokenizer) > shared_size  # A's own tokenizer knows the embedding
    assert len(bundled_tokenizer("clip")) == shared_size  # the shared one does not

    # Model B on the same engine, with the embedding's name as plain words (no library: not loaded)...
    engine.library = None
    after_a = engine.generate(_req(b, "a fox, fuzzyfox"))
    assert len(engine.runner.base.tokenizer) == shared_size
    # ...is exactly B on an engine that never saw A.
    fresh = Engine(device="cpu", keep_models=0).generate(_req(b, "a fox, fuzzyfox"))
    assert np.array_equal(np.asarray(after_a.images[0]), np.asarray(fresh.images[0]))
    assert not np.array_equal(np.asarray(with_embedding.images[0]), np.asarray(after_a.images[0]))
