"""Token counting: a real tokenizer where one is local, the documented estimate otherwise."""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

__all__ = ["CharEstimateCounter", "HFTokenCounter", "TokenCounter"]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of each text; ``name`` identifies the counter in the dataset version's hash."""

    name: str

    def count(self, texts: list[str]) -> list[int]: ...


class CharEstimateCounter:
    """``ceil(characters / chars_per_token)``: AWS's Bedrock validator estimates 3 characters a token.

    The prepare pipeline recognises this counter and computes the same formula inside DuckDB.
    """

    def __init__(self, chars_per_token: float = 3.0) -> None:
        if chars_per_token <= 0:
            raise ValueError("chars_per_token must be positive")
        self.chars_per_token = chars_per_token
        self.name = f"chars/{chars_per_token:g}"

    def count(self, texts: list[str]) -> list[int]:
        return [math.ceil(len(t) / self.chars_per_token) for t in texts]


class HFTokenCounter:
    """Counts with a Hugging Face tokenizer (``transformers`` or ``tokenizers``), no special tokens."""

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.name = name or f"hf/{getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)}"

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if hasattr(self.tokenizer, "encode_batch"):  # a bare `tokenizers.Tokenizer`
            return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
