"""Incremental detokenization with stop sequences.

Decoding the whole answer again after every token costs O(n) per token (O(n^2) per answer). Here only a
short window is decoded: the text of tokens [prefix, read) is compared with the text of [prefix, now),
and the difference is the new text, so a tokenizer's context-dependent decoding (a leading space, bytes
of one character split across tokens) is respected. This is the offset scheme of vLLM's and
text-generation-inference's detokenizers; `tokenizers`' own DecodeStream does the same on the Rust side
but only for a backend tokenizer, not for every transformers tokenizer the catalog may hold.

Held back from the stream: a trailing replacement character (the first bytes of a character whose
remaining bytes are in the next token) and any tail that could be the start of a stop sequence (it must
never be shown). A stop sequence ends the text before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REPLACEMENT = "\ufffd"


class Detokenizer:
    def __init__(self, tokenizer: Any, stop_sequences: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stop_sequences if s]
        self.longest_stop = max((len(s) for s in self.stops), default=0)
        self.ids: list[int] = []
        self._prefix = 0  # start of the decoding window
        self._read = 0  # tokens whose text is already in `decoded`
        self.decoded = ""  # the answer's text so far (before any stop cut)
        self.text = ""  # the answer: decoded text, cut at a stop sequence
        self.emitted = ""  # the part of `text` already handed out
        self.stopped = False  # a stop sequence was found

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def add(self, token_id: int) -> None:
        """Take one generated token (call `delta()` for what can be shown)."""
        if self.stopped:
            return
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            self._extend(after[len(before) :])
            self._prefix, self._read = self._read, len(self.ids)

    def _extend(self, new: str) -> None:
        start = max(0, len(self.decoded) - self.longest_stop + 1)
        self.decoded += new
        if self.stops:  # a stop sequence can only be in the new text or straddle its start
            found = [i for i in (self.decoded.find(s, start) for s in self.stops) if i >= 0]
            if found:
                self.stopped = True
                self.text = self.decoded[: min(found)]
                return
        self.text = self.decoded

    def flush(self) -> None:
        """The stream ends: whatever the window still holds (an incomplete character) becomes text."""
        if not self.stopped and self._read < len(self.ids):
            before = self._decode(self.ids[self._prefix : self._read])
            after = self._decode(self.ids[self._prefix :])
            if len(after) > len(before):
                self._extend(after[len(before) :])
            self._prefix = self._read = len(self.ids)

    def delta(self, final: bool = False) -> str:
        """The text that can be shown now and was not shown before. final: hold nothing back."""
        safe = len(self.text)
        if not final and not self.stopped:
            for s in self.stops:
                for n in range(min(len(s) - 1, safe), 0, -1):
                    if self.text.endswith(s[:n]):
                        safe = min(safe, len(self.text) - n)
                        break
        safe = max(safe, len(self.emitted))
        out = self.text[len(self.emitted) : safe]
        self.emitted += out
        return out
