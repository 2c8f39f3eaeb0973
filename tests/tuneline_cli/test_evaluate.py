"""`tuneline evaluate`: a model against the base on the config's suites, through real S3 and MLflow."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tuneline_cli.main as cli
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.settings import Settings

pytestmark = pytest.mark.service

TICKETS = [f"ticket {i}: my order {i} is late" for i in range(30)]
SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}
FAKE_ACCESS_KEY = "AKIA" + "Q" * 16  # the shape of an AWS access key id; the policy rejects it


def _chat(prompt: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})


def test_evaluate_json_gives_each_suites_metrics_and_what_the_pii_policy_did(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: stack_settings)
    model = build_tiny_model(tmp_path / "tiny", TICKETS, **SIZE)
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(_chat(t, "priority: high") + "\n" for t in TICKETS))
    general = tmp_path / "general.jsonl"
    lines = [_chat(f"question {i}", f"answer {i}") for i in range(10)]
    lines[3] = _chat("write to ana@example.com about the order", "done")  # redacted, kept
    lines[7] = _chat(f"my key is {FAKE_ACCESS_KEY}", "noted")  # rejected: line 8
    general.write_text("".join(line + "\n" for line in lines))
    name = f"cli-eval-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"name: {name}\ndata: {{source: '{source}'}}\n"
        f"tune: {{backend: local, base_model: '{model}'}}\n"
        "evaluation:\n  generation: {max_new_tokens: 4}\n  traces_per_suite: 0\n  suites:\n"
        "    - {name: task, kind: task, metrics: [exact_match]}\n"
        f"    - {{name: general, kind: general, source: '{general}', metrics: [exact_match]}}\n"
    )
    prepared = CliRunner().invoke(cli.app, ["prepare", "--input", str(source), "--name", name, "--json"])
    assert prepared.exit_code == 0, prepared.output
    version = json.loads(prepared.stdout)

    result = CliRunner().invoke(cli.app, [
        "evaluate", "--model", str(model), "--config", str(config), "--dataset", version["uri"],
        "--against", "base", "--json",
    ])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out["suites"]) == {"task", "general"}
    general_match = out["suites"]["general"]["exact_match"]
    assert general_match["n"] == 9  # 10 lines, one rejected
    # the candidate is the base's own weights: the same greedy answers, no difference
    assert general_match["values"]["candidate"] == general_match["values"]["base"]
    assert general_match["delta"] == 0 and general_match["higher_is_better"] is True
    assert out["suites"]["task"]["exact_match"]["n"] == version["splits"]["test"]
    assert out["pii"]["general"]["screened"] is True
    assert (out["pii"]["general"]["redacted"], out["pii"]["general"]["rejected"]) == (1, 1)
    assert out["pii"]["general"]["rejected_lines"] == [8]
    assert out["pii"]["general"]["rejected_kinds"] == {"aws_access_key": 1}
    assert out["pii"]["task"]["screened"] is False  # prepare screened the test split
    assert out["chart_uri"].startswith(f"s3://{stack_settings.s3_bucket}/")
