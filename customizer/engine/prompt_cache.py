"""Text-encoder outputs per prompt, kept in a small LRU.

Candidates (n images, one prompt), repeated selfies of one scene and 'reproduce' all re-encode the same
prompt + negative prompt; the encoder is deterministic, so its output can be reused bit-for-bit. The key carries
everything the output depends on: model weights, both prompts, whether classifier-free guidance needs the negative
half, and the active LoRAs when a LoRA reaches into the text encoder.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable


class PromptCache:
    def __init__(self, maxsize: int = 32):
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        value = compute()  # computed before insertion: a failure caches nothing
        self.misses += 1
        self._entries[key] = value
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._entries), "maxsize": self.maxsize}
