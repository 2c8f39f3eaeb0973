"""Hostile run configs: every bad value is refused with its key path; YAML cannot run code or
blow up. Extends tests/test_config.py with nested paths, ranges and YAML tricks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuneline.config import load_run_config
from tuneline.errors import ConfigError

pytestmark = pytest.mark.faults

BASE = """name: tickets
data:
  source: data.jsonl
tune:
  backend: local
  base_model: models/tiny
"""


BAD_VALUES = [
    ("  max_steps: 0\n", "tune.local.max_steps"),
    ("  max_steps: -5\n", "tune.local.max_steps"),
    ("  lora: {r: 0}\n", "tune.local.lora.r"),
    ("  lora: {dropout: 1.5}\n", "tune.local.lora.dropout"),
    ("  lora: {rank: 8}\n", "tune.local.lora.rank"),
    ("  method: dora\n", "tune.local.method"),
    ("  batch_size: [8]\n", "tune.local.batch_size"),
    ("  trust_remote_code: maybe\n", "tune.local.trust_remote_code"),
    ("evaluation:\n  suites:\n    - {name: t, kind: task, metricz: [exact_match]}\n", "evaluation.suites.0.metricz"),
    ("evaluation:\n  suites:\n    - {name: t, kind: vibes}\n", "evaluation.suites.0.kind"),
    ("evaluation:\n  bootstrap_samples: 5\n", "evaluation.bootstrap_samples"),
    ("approval:\n  timeout_seconds: 0\n", "approval.timeout_seconds"),
    ("approval:\n  checks:\n    - {suite: task, metric: m, max_regression: -1}\n", "approval.checks.0.max_regression"),
    ("approval:\n  mode: yolo\n", "approval.mode"),
    ("promotion:\n  serving: everywhere\n", "promotion.serving"),
    ("promotion:\n  provisioned_model_units: 0\n", "promotion.provisioned_model_units"),
    ("unknown_section: {a: 1}\n", "unknown_section"),
]


@pytest.mark.parametrize(("extra", "key_path"), BAD_VALUES, ids=[key for _, key in BAD_VALUES])
def test_bad_values_are_refused_naming_their_key_path(tmp_path: Path, extra: str, key_path: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError, match="- " + re.escape(key_path) + ":"):
        load_run_config(path)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/new:os.system [echo pwned]\n",
        "name: !!python/name:os.system\n",
        "\x00name: x\n",
        "",
        BASE + "name: other\n",
    ],
    ids=["python-object", "python-name", "nul-byte", "empty-file", "duplicate-keys"],
)
def test_yaml_tricks_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_run_config(path)


@pytest.mark.timeout(30)
def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    anchors = ", ".join(["a0: &l0 {x: 1, y: 1}"] + [f"a{i}: &l{i} {{x: *l{i - 1}, y: *l{i - 1}}}" for i in range(1, 40)])
    path = tmp_path / "run.yaml"
    path.write_text(BASE + f"evaluation:\n  suites:\n    - name: task\n      kind: task\n      json_schema: {{{anchors}}}\n")
    with pytest.raises(ConfigError):
        load_run_config(path)
