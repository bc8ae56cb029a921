"""Streamed deltas always join to the final answer, whatever tokens come (property test over random token ids,
byte-level pieces of multi-byte characters included: µ, °, ±, Chinese)."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from hulumed.generation import decode_result
from hulumed.think import visible_prefix
from tests.conftest import GOLDEN


@lru_cache(maxsize=None)
def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(GOLDEN / "tiny-qwen2")


@lru_cache(maxsize=None)
def _pieces() -> list[int]:
    """Token ids of single bytes and of common medical symbols split into byte pieces, plus ordinary words."""
    tokenizer = _tokenizer()
    ids = set()
    for text in ("µ", "°", "±", "肺", "结节", "≥", "é", " mm", "CT", "\n\n", " ", "<think>", "</think>", "STOP"):
        ids.update(tokenizer.encode(text, add_special_tokens=False))
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    for char in bytes_to_unicode().values():
        token = tokenizer.convert_tokens_to_ids(char)
        if isinstance(token, int) and token != tokenizer.unk_token_id:
            ids.add(token)
    return sorted(ids)


def stream(ids: list[int], stop: list[str]) -> tuple[str, str]:
    """(the joined deltas a client sees, the final answer) for `ids` generated one at a time."""
    tokenizer, shown = _tokenizer(), ""
    for k in range(1, len(ids) + 1):
        visible = visible_prefix(tokenizer.decode(ids[:k], skip_special_tokens=True), stop)
        if visible.startswith(shown) and len(visible) > len(shown):
            shown = visible
    final = decode_result(tokenizer, ids, set(), stop, prompt_tokens=0, visual_tokens=0).text
    return shown, final


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_streamed_text_never_diverges_from_the_final_answer(data):
    pieces = _pieces()
    ids = data.draw(st.lists(st.sampled_from(pieces), min_size=1, max_size=40))
    stop = data.draw(st.sampled_from([[], ["STOP"]]))
    shown, final = stream(ids, stop)
    assert final.startswith(shown), (ids, shown, final)


def test_a_character_split_across_tokens_is_held_back_until_complete():
    tokenizer = _tokenizer()
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    ids = tokenizer.encode("Size 5 ", add_special_tokens=False)
    ids += [tokenizer.convert_tokens_to_ids(table[b]) for b in "µ".encode()]  # two byte tokens: C2, B5
    ids += tokenizer.encode("m", add_special_tokens=False)
    partial = visible_prefix(tokenizer.decode(ids[:-2], skip_special_tokens=True), [])
    assert "\ufffd" not in partial  # the half character is not shown
    shown, final = stream(ids, [])
    assert final == "Size 5 µm" and final.startswith(shown)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_incremental_detokenizer_equals_the_full_decode(data):
    """At every step the incremental text is the full decode with at most a held-back partial-character tail."""
    from hulumed.detokenizer import HOLD_BACK, IncrementalDetokenizer

    tokenizer = _tokenizer()
    ids = data.draw(st.lists(st.sampled_from(_pieces()), min_size=1, max_size=60))
    detok = IncrementalDetokenizer(tokenizer)
    for k, token in enumerate(ids, start=1):
        text = detok.add(token)
        full = tokenizer.decode(ids[:k], skip_special_tokens=True)
        assert full.startswith(text), (ids[:k], text, full)
        assert k - detok._read <= HOLD_BACK  # the window decoded per token stays short: O(1) per token
        held = full[len(text):]  # only a tail the last few ids make: a partial character or the newest token
        assert held == tokenizer.decode(ids[detok._read:k], skip_special_tokens=True) or "\ufffd" in held
