"""Loading reuses the bundled tokenizers built at warm-up (building one stalls the GUI 60-80 ms)."""

from __future__ import annotations

import json
import shutil

import torch

from engine.families.sd import loading
from engine.tokenizers import bundled_tokenizer


def test_single_files_and_identical_folders_share_the_bundled_tokenizer(tiny_models, tmp_path):
    _, single, _ = loading.load_pipeline(tiny_models.get("sdxl", single_file=True), torch.float32)
    assert single.tokenizer is bundled_tokenizer("clip")
    assert single.tokenizer_2 is bundled_tokenizer("clip-pad-bang")
    _, folder, _ = loading.load_pipeline(tiny_models.get("sd15"), torch.float32)
    assert folder.tokenizer is bundled_tokenizer("clip")

    # A folder whose tokenizer differs from the bundled one keeps its own.
    own = tmp_path / "own-tokenizer"
    shutil.copytree(tiny_models.get("sd15"), own)
    config_path = own / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_max_length"] = 64
    config_path.write_text(json.dumps(config))
    _, custom, _ = loading.load_pipeline(own, torch.float32)
    assert custom.tokenizer is not bundled_tokenizer("clip")
    assert custom.tokenizer.model_max_length == 64
