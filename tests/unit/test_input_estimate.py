"""The input estimate follows the model's tokenizer (bench/input_estimate.py measures it
against real tokenizers on real agents' requests)."""
from __future__ import annotations

import json

import pytest

from guard.proxy import anthropic_wire
from guard.proxy.wire import BYTES_PER_TOKEN, BYTES_PER_TOKEN_NEW_CLAUDE, bytes_per_token


@pytest.mark.parametrize("model,rate", [
    ("claude-sonnet-4-5", BYTES_PER_TOKEN), ("claude-sonnet-4-5-20250929", BYTES_PER_TOKEN),
    ("claude-opus-4-6", BYTES_PER_TOKEN), ("claude-opus-4-20250514", BYTES_PER_TOKEN),
    ("claude-3-5-haiku-latest", BYTES_PER_TOKEN), ("anthropic/claude-haiku-4-5", BYTES_PER_TOKEN),
    ("claude-opus-4-7", BYTES_PER_TOKEN_NEW_CLAUDE), ("claude-opus-4-8", BYTES_PER_TOKEN_NEW_CLAUDE),
    ("claude-sonnet-5", BYTES_PER_TOKEN_NEW_CLAUDE), ("claude-opus-5-5", BYTES_PER_TOKEN_NEW_CLAUDE),
    ("claude-fable-5", BYTES_PER_TOKEN_NEW_CLAUDE),    # a family guard does not know: the dearer reading
    ("gpt-4o", BYTES_PER_TOKEN), (None, BYTES_PER_TOKEN),
])
def test_bytes_per_token_by_model(model: str | None, rate: float) -> None:
    assert bytes_per_token(model) == rate


def test_opus_4_7_estimate_covers_its_tokenizer() -> None:
    text = "Read the file, then fix the failing test in src/app.py. " * 400
    def est(model: str) -> int:
        body = {"model": model, "max_tokens": 8000, "messages": [{"role": "user", "content": text}]}
        return anthropic_wire.estimate(json.dumps(body).encode(), body).input_tokens
    # The new tokenizer's up to 1.45x more tokens stay inside the estimate's margin.
    assert est("claude-opus-4-7") >= 1.19 * est("claude-opus-4-6")
