"""The prompt policy, by capability: what a family's text encoder is given.

A1111 syntax (``<lora:name:w>`` tags, ``(word:1.2)`` weights, ``BREAK``) is understood by families
that declare it (the SD family applies it through compel and its add-ons). Every other family gets
plain text: the tags and weights are stripped, with one notice each, and never reach a text
encoder raw. A region's prompt (``GenerationRequest.regions``) gets the same treatment, except that it
never takes a LoRA (a LoRA changes the whole model, not one area): its tags are left out with a notice.
Any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import prompts


@dataclass(frozen=True)
class PromptText:
    """A request's prompts as the family's encoder takes them, and the LoRAs the prompts name;
    ``regions``: each region's prompt as the encoder takes it, in the request's order."""

    prompt: str
    negative: str
    loras: tuple[prompts.LoraRef, ...] = ()
    regions: tuple[str, ...] = ()


def prepare(prompt: str, negative: str, label: str, *, loras: bool, weighting: bool,
            notices: list[str], regions: tuple[str, ...] = ()) -> PromptText:
    """``prompt``/``negative`` (and the ``regions``' prompts) for a family called ``label`` that takes
    LoRAs (``loras``) and A1111 weighting (``weighting``) or not; what it cannot take is stripped and
    said in ``notices``."""
    region_texts = []
    for text in regions:
        parsed = prompts.extract_loras(text)
        if parsed.loras:
            _add(notices, "A region's prompt takes no LoRAs (they act on the whole image; put them in the main "
                          "prompt): " + ", ".join(f"<lora:{r.name}>" for r in parsed.loras) + " left out of it.")
        region_texts.append(parsed.text)
    parsed, parsed_neg = prompts.extract_loras(prompt), prompts.extract_loras(negative)
    for problem in parsed.problems + parsed_neg.problems:
        _add(notices, problem)
    refs = list(parsed.loras) + [r for r in parsed_neg.loras if r.name not in {x.name for x in parsed.loras}]
    if refs and not loras:
        _add(notices, f"LoRAs do not apply to {label}: " + ", ".join(f"<lora:{r.name}>" for r in refs)
             + " left out of the prompt.")
        refs = []
    texts = [parsed.text, parsed_neg.text, *region_texts]
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
    return PromptText(texts[0], texts[1], tuple(refs), tuple(texts[2:]))


def _add(notices: list[str], text: str) -> None:
    if text not in notices:
        notices.append(text)
