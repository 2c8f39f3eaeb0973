"""The `tuneline` command line: JSON summaries and exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneline_cli.main import app

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present in this checkout")
def test_validate_a_real_dataset_prints_a_reconciling_json_summary() -> None:
    result = run("validate", "--input", str(SHARED / "json_mode_dataset.jsonl"), "--target", "bedrock-claude-haiku", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["total"] == 500
    assert summary["total"] == summary["accepted"] + summary["rejected"] + summary["duplicates"] + summary["filtered"]
    assert {"errors", "pii", "splits", "tokens", "estimated_cost_usd"} <= summary.keys()


def test_validate_unusable_input_exits_2_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "few.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    result = run("validate", "--input", str(data), "--target", "bedrock-claude-haiku", "--json")
    assert result.exit_code == 2
    assert "too_few_records" in result.output or "at least" in result.output


def test_missing_input_exits_2(tmp_path: Path) -> None:
    result = run("validate", "--input", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "no input files" in result.output


def test_run_with_an_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("name: x\ndata: {source: d.jsonl}\ntune: {backend: local, base_model: m, epochz: 1}\n")
    result = run("run", str(config))
    assert result.exit_code == 2
    assert "epochz" in result.output
