"""Bedrock model customization prices: a dated table that users override, never hard-wired.

Training is billed per token processed: (tokens in the training data) x (epochs). Storage of the
custom model and serving it are billed separately and are not part of the estimate.

The default table below was copied from https://aws.amazon.com/bedrock/pricing/ on ``AS_OF``; AWS
changes prices and they differ by region, so treat the numbers as an estimate and pass your own
table (``tuneline tune --dry-run --prices prices.json``, same shape as :class:`PriceTable`).
Models without a per-token training price here (RFT, billed differently; Amazon Titan Text, whose
price was not copied) get no estimate.

It is the one price table: the prepare stage's estimate reads it too (each Bedrock target of
``tuneline.data.targets`` names the model whose price stands for it). Like the model table, this
module depends on pydantic and the error hierarchy only, so the core may import it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneline.errors import ConfigError

__all__ = ["DEFAULT_PRICES", "PriceTable", "estimate_training_cost", "load_price_table"]


class PriceTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of: date = Field(description="When these prices were read.")
    source: str
    currency: str = "USD"
    training_per_1k_tokens: dict[str, float] = Field(
        description="base model id -> price of training on 1,000 tokens (one epoch)."
    )


DEFAULT_PRICES = PriceTable(
    as_of=date(2026, 12, 2),
    source="https://aws.amazon.com/bedrock/pricing/ (model customization, us-east-1 / us-west-2)",
    training_per_1k_tokens={
        "anthropic.claude-3-haiku-20240307-v1:0:200k": 0.004,
        "amazon.nova-micro-v1:0:128k": 0.001,
        "amazon.nova-lite-v1:0:300k": 0.002,
        "amazon.nova-pro-v1:0:300k": 0.008,
        "meta.llama3-1-8b-instruct-v1:0:128k": 0.00149,
        "meta.llama3-1-70b-instruct-v1:0:128k": 0.00799,
        "meta.llama3-2-1b-instruct-v1:0:128k": 0.0005,
        "meta.llama3-2-3b-instruct-v1:0:128k": 0.0008,
        "meta.llama3-2-11b-instruct-v1:0:128k": 0.0016,
        "meta.llama3-2-90b-instruct-v1:0:128k": 0.0072,
    },
)


def load_price_table(path: str | Path | None) -> PriceTable:
    """The user's table from a JSON file, or the default one."""
    if path is None:
        return DEFAULT_PRICES
    try:
        return PriceTable.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"price table {path}: {exc}") from exc


def estimate_training_cost(prices: PriceTable, model_id: str, tokens: int, epochs: int) -> float | None:
    """tokens x epochs x price per 1k tokens; None when the table has no price for the model."""
    price = prices.training_per_1k_tokens.get(model_id)
    if price is None:
        return None
    return round(tokens * epochs / 1000 * price, 6)
