"""The text of a growing answer, decoded incrementally: O(1) tokens decoded per new token, not the whole answer.

Streaming used to call ``tokenizer.decode(all ids so far)`` for every new token, so a 2,000-token answer decoded
two million tokens. ``IncrementalDetokenizer`` keeps the text settled so far and decodes only a short window of
ids (from ``prefix`` to the end), as vLLM's and text-generation-inference's detokenizers do: the new text is what
the window decodes to beyond what its settled part (``prefix`` .. ``read``) decoded to. A window that ends inside a
character (byte-level pieces of µ, °, a Chinese character decode to U+FFFD until the rest arrives) is not settled
until the character is complete, so ``text`` never holds a replacement character that the full decode would not.

    detok = IncrementalDetokenizer(tokenizer)
    for token in new_tokens:
        raw = detok.add(token)          # == tokenizer.decode(ids, skip_special_tokens=True), minus a held-back tail

tests/unit/test_stream_text.py checks ``text`` against the full decode over random byte-level token sequences.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"
HOLD_BACK = 4  # ids a UTF-8 character can span when every byte is its own token


class IncrementalDetokenizer:
    """``text`` of the ids added so far (``skip_special_tokens`` decoding), a partial character held back."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # window start: decoding starts here so a token's leading space / bytes join correctly
        self._read = 0  # ids before this are in `text`

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def add(self, token: int) -> str:
        """Append one id; returns ``text`` (everything settled so far)."""
        self.ids.append(int(token))
        settled = self._decode(self.ids[self._prefix:self._read])
        window = self._decode(self.ids[self._prefix:])
        if not window.startswith(settled):  # a tokenizer whose pieces do not concatenate: decode it all (rare)
            self.text = self._decode(self.ids).rstrip(REPLACEMENT)
            self._prefix = self._read = len(self.ids)
            return self.text
        if len(window) > len(settled) and not window.endswith(REPLACEMENT):
            self.text += window[len(settled):]
            self._prefix, self._read = self._read, len(self.ids)
        elif len(self.ids) - self._read > HOLD_BACK:  # bytes that never complete a character: settle all but the
            end = len(self.ids) - HOLD_BACK  # last few tokens (a character spans at most 4 byte tokens)
            self.text += self._decode(self.ids[self._prefix:end])[len(settled):]
            self._prefix, self._read = self._read, end
        return self.text

    def extend(self, tokens: list[int]) -> str:
        for token in tokens:
            self.add(token)
        return self.text
