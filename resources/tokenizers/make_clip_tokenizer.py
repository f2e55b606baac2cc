"""Regenerate the bundled CLIP BPE tokenizer files from the CLIP merges list.

The source is ``bpe_simple_vocab_16e6.txt.gz`` (the CLIP byte-pair merges, shipped in the MIT-licensed
``open_clip_torch`` wheel). The Hugging Face ``CLIPTokenizer`` files are a fixed function of it:

* merges: lines ``1 .. 49152 - 256 - 2`` of the file (line 0 is a header), 48,894 merges;
* vocabulary (token -> id, in this order): the 256 byte symbols of the GPT-2 byte-to-unicode table,
  the same 256 with ``</w>`` appended, each merge joined, then ``<|startoftext|>`` and ``<|endoftext|>``:
  49,408 entries.

Writes ``clip/`` (vocab.json, merges.txt and the CLIP-L special-token configs, pad ``<|endoftext|>``)
and ``clip-pad-bang/`` (only the configs, pad ``!``, as the OpenCLIP tokenizers of SD2 and of SDXL's
second encoder have it; its vocab.json and merges.txt are the ones in ``clip/``, copied in by
``engine.architectures.write_tokenizer``).

Usage: ``python resources/tokenizers/make_clip_tokenizer.py [--bpe PATH/bpe_simple_vocab_16e6.txt.gz]``
(without ``--bpe`` it looks in an installed ``open_clip`` package, then in /tmp/oc/open_clip).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def build(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : NUM_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != 49408 or len(merges) != NUM_MERGES:
        raise SystemExit(f"unexpected sizes: vocab {len(vocab)}, merges {len(merges)}")
    return vocab, merges


def tokenizer_config(pad: str) -> dict:
    return {
        "add_prefix_space": False,
        "bos_token": BOS,
        "do_lower_case": True,
        "eos_token": EOS,
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    }


def special_tokens(pad: str) -> dict:
    return {"bos_token": BOS, "eos_token": EOS, "pad_token": pad, "unk_token": EOS}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def find_bpe() -> Path:
    spec = importlib.util.find_spec("open_clip")
    candidates = []
    if spec and spec.submodule_search_locations:
        candidates += [Path(p) / BPE_NAME for p in spec.submodule_search_locations]
    candidates.append(Path("/tmp/oc/open_clip") / BPE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise SystemExit(
        f"{BPE_NAME} not found: pip download --no-deps open_clip_torch==2.32.0, unzip it, pass --bpe"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpe", type=Path, default=None, help=f"path to {BPE_NAME}")
    parser.add_argument("--out", type=Path, default=HERE, help="resources/tokenizers folder")
    args = parser.parse_args()
    vocab, merges = build(args.bpe or find_bpe())

    clip = args.out / "clip"
    clip.mkdir(parents=True, exist_ok=True)
    (clip / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (clip / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    write_json(clip / "tokenizer_config.json", tokenizer_config(EOS))
    write_json(clip / "special_tokens_map.json", special_tokens(EOS))

    bang = args.out / "clip-pad-bang"
    bang.mkdir(parents=True, exist_ok=True)
    write_json(bang / "tokenizer_config.json", tokenizer_config("!"))
    write_json(bang / "special_tokens_map.json", special_tokens("!"))
    print(f"wrote {clip} ({len(vocab)} tokens, {len(merges)} merges) and {bang}")


if __name__ == "__main__":
    main()
