"""Prepare's cost estimate reads the one dated, overridable price table the Bedrock dry run reads."""

from __future__ import annotations

import math
from datetime import date

from tuneline.backends.bedrock.prices import DEFAULT_PRICES, PriceTable
from tuneline.config import DataConfig, Target
from tuneline.data.prepare import build_dataset
from tuneline.data.report import render_report
from tuneline.data.targets import estimate_cost_usd, limits_for, training_price

ALL_TRAIN = {"train": 1, "validation": 0, "test": 0}


def test_each_bedrock_targets_price_is_its_models_price_in_the_table() -> None:
    assert training_price(limits_for(Target.BEDROCK_CLAUDE_HAIKU)) == DEFAULT_PRICES.training_per_1k_tokens[
        "anthropic.claude-3-haiku-20240307-v1:0:200k"
    ]
    assert training_price(limits_for(Target.BEDROCK_NOVA)) == DEFAULT_PRICES.training_per_1k_tokens[
        "amazon.nova-micro-v1:0:128k"
    ]
    # No Titan price and no local per-token price: no estimate rather than a guessed one.
    assert training_price(limits_for(Target.BEDROCK_TITAN)) is None
    assert estimate_cost_usd(Target.BEDROCK_TITAN, 10_000) is None
    assert estimate_cost_usd(Target.LOCAL, 10_000) is None
    # Another table (the user's) is read the same way.
    mine = PriceTable(
        as_of=date(2026, 11, 1), source="my contract", training_per_1k_tokens={"amazon.nova-micro-v1:0:128k": 1.0}
    )
    assert estimate_cost_usd(Target.BEDROCK_NOVA, 1_500, prices=mine) == 3.0  # 1.5k tokens x 2 epochs x $1


def test_the_prepare_summary_and_report_quote_the_tables_price_and_date(tmp_path, write_lines, chat) -> None:
    path = write_lines([chat(i) for i in range(40)])
    built = build_dataset(DataConfig(source=str(path), split=ALL_TRAIN), Target.BEDROCK_CLAUDE_HAIKU, tmp_path / "w")
    summary, cost = built.summary, built.profile["cost"]
    price = DEFAULT_PRICES.training_per_1k_tokens["anthropic.claude-3-haiku-20240307-v1:0:200k"]
    assert cost["price_per_1k_tokens_usd"] == price and cost["epochs"] == 2
    assert cost["prices_taken_on"] == DEFAULT_PRICES.as_of.isoformat() and cost["price_source"] == DEFAULT_PRICES.source
    assert summary.estimated_cost_usd == math.ceil(summary.tokens * 2 * price / 1000 * 100) / 100
    assert f"prices taken {DEFAULT_PRICES.as_of.isoformat()}" in render_report(built.profile)
