"""The prompt policy, by capability: what a family's text encoder is given.

A1111 syntax (``<lora:name:w>`` tags, ``(word:1.2)`` weights, ``BREAK``) is understood by families
that declare it (the SD family applies it through compel and its add-ons). Every other family gets
plain text: the tags and weights are stripped, with one notice each, and never reach a text
encoder raw. Any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import prompts


@dataclass(frozen=True)
class PromptText:
    """A request's prompts as the family's encoder takes them, and the LoRAs the prompts name."""

    prompt: str
    negative: str
    loras: tuple[prompts.LoraRef, ...] = ()


def prepare(prompt: str, negative: str, label: str, *, loras: bool, weighting: bool,
            notices: list[str]) -> PromptText:
    """``prompt``/``negative`` for a family called ``label`` that takes LoRAs (``loras``) and A1111
    weighting (``weighting``) or not; what it cannot take is stripped and said in ``notices``."""
    parsed, parsed_neg = prompts.extract_loras(prompt), prompts.extract_loras(negative)
    for problem in parsed.problems + parsed_neg.problems:
        _add(notices, problem)
    refs = list(parsed.loras) + [r for r in parsed_neg.loras if r.name not in {x.name for x in parsed.loras}]
    if refs and not loras:
        _add(notices, f"LoRAs do not apply to {label}: " + ", ".join(f"<lora:{r.name}>" for r in refs)
             + " left out of the prompt.")
        refs = []
    texts = [parsed.text, parsed_neg.text]
    if not weighting:
        plain = []
        weighted = False
        for text in texts:
            fragments = prompts.parse_weights(text)
            weighted = weighted or any(weight != 1.0 for _, weight in fragments)
            plain.append(" ".join(prompts.split_break("".join(fragment for fragment, _ in fragments))))
        if weighted:
            _add(notices, f"Prompt weights such as (word:1.2) do not apply to {label}; the words were used as "
                          "plain text.")
        texts = plain
    return PromptText(texts[0], texts[1], tuple(refs))


def _add(notices: list[str], text: str) -> None:
    if text not in notices:
        notices.append(text)
