"""The last prompt encoding of one loaded model, kept while nothing it depends on changed.

Live painting runs the same prompt again and again on a changing canvas: the text encoders (CLIP, T5,
an LLM) need not run again for text they have just encoded. A runner keeps one ``PromptCache``; its
family's encode step asks ``get(key, encode)``, with ``key`` naming everything the embeddings depend on
(the text, the negative, clip skip, the LoRAs and embeddings applied to the text encoder, the modules
and the device they sit on). Only the last encoding is kept (a few hundred KB to a few MB of tensors);
parking or closing the model drops it. Engine thread.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable


class PromptCache:
    """One key and the encoding made for it. ``encodes`` counts the encodings actually run."""

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._value: Any = None
        self.encodes = 0

    def get(self, key: Hashable, encode: Callable[[], Any]) -> Any:
        """The encoding for ``key``: the kept one when ``key`` is the last key, else ``encode()`` (kept
        for next time). A ``None`` key is never cached. Engine thread."""
        if key is not None and self._key == key:
            return self._value
        self._key = self._value = None  # an encode that raises (OOM) leaves nothing stale behind
        value = encode()
        self.encodes += 1
        if key is not None:
            self._key, self._value = key, value
        return value

    def clear(self) -> None:
        """Drop the kept encoding (its tensors may sit on the GPU). Engine thread."""
        self._key = self._value = None


def modules_key(*modules: Any) -> tuple:
    """The identity of the text-encoding modules (a LoRA or an embedding changes them in place, so
    callers add what was applied; a new module object — another VAE or tokenizer copy — is a new key)."""
    return tuple(id(m) for m in modules)
