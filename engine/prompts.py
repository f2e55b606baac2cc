"""Prompts in A1111 syntax: ``(word:1.2)``, ``(word)``, ``[word]``, ``BREAK``, ``<lora:name:0.8>``,
textual-inversion embeddings by name, any length, and clip skip.

Parsing the syntax into weighted fragments is done here (A1111's grammar is small, and no maintained
library reads it); turning fragments into embeddings (per-token weighting, down-weighting by masking,
prompts longer than 77 tokens in chunks, multi-vector embeddings) is done by compel's
``EmbeddingsProvider``. ``parse_*`` functions are pure and cheap (any thread); ``encode_prompts``
runs the text encoders, on the engine thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND = 1.1  # A1111: "(word)" multiplies attention by 1.1, "[word]" divides by it

_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)
_WEIGHT_CLOSE = re.compile(r":\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)")
_BREAK = re.compile(r"(?:^|\s)BREAK(?:\s|$)")


@dataclass(frozen=True)
class LoraRef:
    """One ``<lora:name:weight>`` tag of a prompt."""

    name: str
    weight: float


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt with its LoRA tags taken out (``text``) and listed (``loras``, in order, no repeats)."""

    text: str
    loras: tuple[LoraRef, ...]
    problems: tuple[str, ...] = ()


def extract_loras(prompt: str) -> ParsedPrompt:
    """Take ``<lora:name:weight>`` tags out of ``prompt`` (weight defaults to 1; a repeated name keeps its
    last weight). A weight that is not a number is reported in ``problems`` and the tag ignored."""
    found: dict[str, float] = {}
    problems: list[str] = []

    def take(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        raw = (match.group(2) or "").strip()
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            problems.append(f"<lora:{name}:{raw}>: the weight is not a number; the LoRA was left out")
            return ""
        if name:
            found.pop(name, None)
            found[name] = weight
        return ""

    text = _LORA_TAG.sub(take, prompt)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    text = re.sub(r"\s+,", ",", text)
    return ParsedPrompt(text, tuple(LoraRef(n, w) for n, w in found.items()), tuple(problems))


def parse_weights(text: str) -> list[tuple[str, float]]:
    """A1111 attention syntax to ``[(fragment, weight), ...]`` (adjacent equal weights merged).

    ``(a)`` x1.1, ``((a))`` x1.21, ``[a]`` /1.1, ``(a:1.5)`` x1.5, ``\\(`` a literal bracket; an
    unclosed bracket weights everything after it; a stray closing bracket is literal text.
    """
    out: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for item in out[start:]:
            item[1] *= factor

    i, n = 0, len(text)
    buf: list[str] = []

    def flush() -> None:
        if buf:
            out.append(["".join(buf), 1.0])
            buf.clear()

    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            buf.append(text[i + 1])
            i += 2
            continue
        if c == "(":
            flush()
            round_open.append(len(out))
        elif c == "[":
            flush()
            square_open.append(len(out))
        elif c == ":" and round_open and (m := _WEIGHT_CLOSE.match(text, i)):
            flush()
            scale(round_open.pop(), float(m.group(1)))
            i = m.end()
            continue
        elif c == ")" and round_open:
            flush()
            scale(round_open.pop(), ROUND)
        elif c == "]" and square_open:
            flush()
            scale(square_open.pop(), 1 / ROUND)
        else:
            buf.append(c)
        i += 1
    flush()
    for start in round_open:
        scale(start, ROUND)
    for start in square_open:
        scale(start, 1 / ROUND)

    merged: list[tuple[str, float]] = []
    for frag, weight in out:
        if not frag:
            continue
        weight = round(weight, 6)
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + frag, weight)
        else:
            merged.append((frag, weight))
    return merged or [("", 1.0)]


def split_break(text: str) -> list[str]:
    """A1111's ``BREAK``: each part starts a new 77-token chunk."""
    parts = [p.strip() for p in _BREAK.split(text)]
    return [p for p in parts if p] or [""]


def embedding_names_in(text: str, names: set[str] | list[str]) -> list[str]:
    """The embedding names (case-sensitive, as A1111) that occur as words in ``text``."""
    return [name for name in names if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]


# ------------------------------------------------------------------------------------------------
# Encoding (engine thread)
# ------------------------------------------------------------------------------------------------


def _provider_class():
    from compel.embeddings_provider import EmbeddingsProvider, SplitLongTextMode

    class LayerEmbeddingsProvider(EmbeddingsProvider):
        """compel's provider reading any text-encoder layer: ``layer`` 0 = the last (A1111 clip skip 1),
        n = n layers before it; ``normalize`` applies the final layer norm (SD1/SD2) or not (SDXL)."""

        def __init__(self, *args, layer: int = 0, normalize: bool = True, **kwargs):
            kwargs.setdefault("split_long_text_mode", SplitLongTextMode.WORDS | SplitLongTextMode.COPY_FIRST_CLS_TOKEN)
            super().__init__(*args, **kwargs)
            self.layer = layer
            self.normalize = normalize
            self.pooled: dict[tuple, object] = {}  # token ids -> the pooled output of an unmasked pass over them

        def _encode_token_ids_to_embeddings(self, token_ids, attention_mask=None):
            if self.layer == 0 and self.normalize:
                out = self.text_encoder(token_ids, attention_mask, return_dict=True)
                self._keep_pooled(token_ids, attention_mask, out)
                return out.last_hidden_state
            out = self.text_encoder(token_ids, attention_mask, output_hidden_states=True, return_dict=True)
            self._keep_pooled(token_ids, attention_mask, out)
            hidden = out.hidden_states[-(self.layer + 1)]
            if self.normalize:
                # transformers 5 put final_layer_norm on CLIPTextModel itself (4.x: .text_model); compel's
                # own PENULTIMATE_HIDDEN_STATES_NORMALIZED still looks in .text_model, so it is done here.
                model = getattr(self.text_encoder, "text_model", self.text_encoder)
                hidden = model.final_layer_norm(hidden)
            return hidden

        def _keep_pooled(self, token_ids, attention_mask, out) -> None:
            pooled = getattr(out, "pooler_output", None)
            pooled = pooled if pooled is not None else getattr(out, "text_embeds", None)
            if pooled is not None and token_ids.shape[0] == 1 and self._unmasked_to_end(token_ids, attention_mask):
                self.pooled[tuple(token_ids[0].tolist())] = pooled

        def _unmasked_to_end(self, token_ids, attention_mask) -> bool:
            """Whether a pass with ``attention_mask`` pools as an unmasked one: CLIP pools at the end token,
            which under causal attention sees only the tokens before it, so a mask hiding only what follows
            that token changes nothing."""
            if attention_mask is None:
                return True
            eos = self.tokenizer.eos_token_id
            row, ids = attention_mask[0].tolist(), token_ids[0].tolist()
            end = ids.index(eos) if eos in ids else len(ids) - 1
            return all(row[: end + 1])

        def get_pooled_embeddings(self, texts, attention_mask=None, device=None, return_tokens=False):
            """SDXL's pooled prompt: from the pass that already encoded the same tokens (the prompt's
            first chunk, when it is the whole prompt), else compel's own pass. Same numbers either way."""
            if attention_mask is None and not return_tokens and len(texts) == 1:
                ids = self.get_token_ids(texts, padding="max_length", truncation_override=True)
                found = self.pooled.get(tuple(ids[0]))
                if found is not None:
                    return found.to(device or self.device)
            return super().get_pooled_embeddings(texts, attention_mask, device=device, return_tokens=return_tokens)

    return LayerEmbeddingsProvider


def _weighted(provider, text: str, device):
    """Embeddings of one prompt: each BREAK part chunked and weighted by compel, parts concatenated."""
    import torch

    parts = []
    for part in split_break(text):
        frags = parse_weights(part)
        parts.append(provider.get_embeddings_for_weighted_prompt_fragments(
            [[f for f, _ in frags]], [[w for _, w in frags]], device=device))
    return torch.cat(parts, dim=1)


def _pad_to(t, n: int, empty):
    """Pad embeddings ``t`` to ``n`` tokens with chunks of the empty prompt's embeddings; ``empty()``
    gives them, called only when padding is needed (it runs the text encoder: compel's ``empty_z``)."""
    import torch

    while t.shape[1] < n:
        t = torch.cat([t, empty().to(t)], dim=1)
    return t


def _pad_same_length(a, b, empty):
    n = max(a.shape[1], b.shape[1])
    return _pad_to(a, n, empty), _pad_to(b, n, empty)


def encode_prompts(pipe, family: str, prompt: str, negative: str, clip_skip: int = 1) -> dict:
    """Prompt embeddings for ``pipe`` as keyword arguments of its ``__call__``.

    ``prompt``/``negative`` are LoRA-free text (see ``extract_loras``) in A1111 weighting syntax;
    embeddings already loaded into the pipeline's tokenizer are expanded by compel's textual-inversion
    manager. ``clip_skip`` counts as in A1111 (1 = the model's default layer). Runs on the engine thread.
    """
    import torch
    from compel.diffusers_textual_inversion_manager import DiffusersTextualInversionManager

    provider_cls = _provider_class()
    device = pipe._execution_device
    ti = DiffusersTextualInversionManager(pipe)
    skip = max(0, clip_skip - 1)
    _check_clip_skip(pipe, clip_skip, skip + (1 if family == "sdxl" else 0))
    if family != "sdxl":
        provider = provider_cls(pipe.tokenizer, pipe.text_encoder, textual_inversion_manager=ti, truncate=False,
                                device=device, layer=skip, normalize=True)
        pe = _weighted(provider, prompt, device)
        ne = _weighted(provider, negative, device)
        pe, ne = _pad_same_length(pe, ne, lambda: provider.empty_z)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne}

    # SDXL: the penultimate layer of both encoders (not normalised), side by side; pooled from the second.
    providers = [
        provider_cls(tok, enc, textual_inversion_manager=ti, truncate=False, device=device, layer=1 + skip,
                     normalize=False)
        for tok, enc in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))
    ]

    def both(text: str):
        embeds = [_weighted(p, text, device) for p in providers]
        n = max(e.shape[1] for e in embeds)
        embeds = [_pad_to(e, n, lambda p=p: p.empty_z) for e, p in zip(embeds, providers)]
        plain = " ".join(f for part in split_break(text) for f, _ in parse_weights(part))
        pooled = providers[1].get_pooled_embeddings([ti_expand(pipe, plain)], device=device)
        return torch.cat(embeds, dim=-1), pooled

    pe, pooled = both(prompt)
    if not negative.strip() and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        ne, npooled = torch.zeros_like(pe), torch.zeros_like(pooled)
    else:
        ne, npooled = both(negative)
        pe, ne = _pad_same_length(pe, ne, lambda: torch.cat([p.empty_z for p in providers], dim=-1))
    if ne.shape[1] != pe.shape[1]:
        ne = torch.zeros_like(pe)
    return {"prompt_embeds": pe, "negative_prompt_embeds": ne,
            "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": npooled}


def _check_clip_skip(pipe, clip_skip: int, layer: int) -> None:
    """Refuse a clip skip that reaches past the text encoder's layers (compel would index out of range),
    with a line that says this model's limit; ``layer`` is how many final layers are skipped."""
    from engine.api import InvalidRequest

    layers = getattr(getattr(getattr(pipe, "text_encoder", None), "config", None), "num_hidden_layers", None)
    if isinstance(layers, int) and layer >= layers:
        most = clip_skip - (layer - layers) - 1
        raise InvalidRequest("clip_skip", f"{clip_skip} is more than this model's text encoder allows "
                                          f"({layers} layers: clip skip {max(1, most)} at most)")


def ti_expand(pipe, text: str) -> str:
    """Multi-vector embedding names spelled out as their tokens (``name name_1 ...``)."""
    return pipe.maybe_convert_prompt(text, pipe.tokenizer) if hasattr(pipe, "maybe_convert_prompt") else text
