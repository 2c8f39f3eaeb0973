"""Which parameter names are redacted as credentials: a token that grants access is, a count of
text tokens is not (issue 18: `max_new_tokens` showed as ***redacted*** in MLflow)."""

from __future__ import annotations

import pytest

from tuneline.storage.tracking import REDACTED, _redact


@pytest.mark.parametrize(
    "key", ["hf_token", "token", "evaluation.judge.access_token", "session-token", "password", "api_key", "aws_secret"]
)
def test_credential_names_are_redacted(key: str) -> None:
    assert _redact(key, "value", []) == REDACTED


@pytest.mark.parametrize(
    "key",
    ["evaluation.generation.max_new_tokens", "tune.max_tokens", "tokens_per_second", "tokenizer", "pad_token_id"],
)
def test_token_counts_and_tokenizers_are_shown(key: str) -> None:
    assert _redact(key, "128", []) == "128"


def test_a_secret_value_is_redacted_whatever_its_name() -> None:
    assert _redact("evaluation.generation.max_new_tokens", "xx-SECRET-xx", ["SECRET"]) == REDACTED
