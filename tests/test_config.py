from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tuneline.config import BedrockTuneConfig, LocalTuneConfig, RunConfig, Target, load_run_config
from tuneline.errors import ConfigError

MINIMAL = """
name: support-tickets
data:
  source: data.jsonl
tune:
  backend: local
  base_model: models/tiny
"""


@pytest.fixture
def write_config(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "run.yaml"
        path.write_text(text)
        return path

    return write


def test_minimal_config_gets_defaults(write_config) -> None:
    config = load_run_config(write_config(MINIMAL))
    assert isinstance(config.tune, LocalTuneConfig)
    assert config.target is Target.LOCAL
    assert config.evaluation.suites[0].name == "task"
    assert config.dataset_name == "support-tickets"


def test_config_hash_is_stable_and_sensitive(write_config) -> None:
    a = load_run_config(write_config(MINIMAL))
    b = load_run_config(write_config(MINIMAL))
    c = load_run_config(write_config(MINIMAL.replace("models/tiny", "models/other")))
    assert a.config_hash() == b.config_hash() != c.config_hash()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "  learning_rat: 0.1\n", "tune.local.learning_rat: Extra inputs are not permitted"),
        (MINIMAL + "  batch_size: lots\n", "tune.local.batch_size"),
        (MINIMAL + "  learning_rate: 5\n", "less than or equal to 1"),
        (MINIMAL.replace("source: data.jsonl", "source: d.jsonl\n  split: {train: 0.9, validation: 0.2, test: 0.1}"), "sum to 1"),
        (MINIMAL.replace("name: support-tickets", "name: 'bad name!'"), "name: String should match pattern"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("name: [unclosed", "not valid YAML"),
        ("!!python/object/apply:os.system ['echo pwned']", "not valid YAML"),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range", "split-sum", "bad-name", "not-a-mapping", "bad-yaml", "unsafe-yaml-tag"],
)
def test_bad_configs_name_the_key(write_config, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_run_config(write_config(text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")


def test_bedrock_target_follows_the_base_model() -> None:
    role = "arn:aws:iam::123456789012:role/bedrock-ft"
    nova = BedrockTuneConfig(base_model="amazon.nova-micro-v1:0:128k", role_arn=role)
    haiku = BedrockTuneConfig(base_model="anthropic.claude-3-haiku-20240307-v1:0:200k", role_arn=role)
    assert (nova.target, haiku.target) == (Target.BEDROCK_NOVA, Target.BEDROCK_CLAUDE_HAIKU)
    config = RunConfig(name="x", data={"source": "d.jsonl"}, tune=nova)
    assert config.target is Target.BEDROCK_NOVA
    # continued pre-training writes Titan's {"input": ...} lines, whatever the model table says
    cpt = BedrockTuneConfig(
        base_model="amazon.titan-text-express-v1:0:8k", role_arn=role, customization_type="CONTINUED_PRE_TRAINING"
    )
    assert RunConfig(name="x", data={"source": "d.jsonl"}, tune=cpt).target is Target.BEDROCK_TITAN


def test_bedrock_serving_for_a_local_model_is_refused_saying_how_it_is_served(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "name: t\ndata: {source: d.jsonl}\ntune: {backend: local, base_model: m}\n"
        "promotion: {serving: provisioned-throughput}\n"
    )
    with pytest.raises(ConfigError, match=r"(?m)^- promotion.serving 'provisioned-throughput' is Bedrock serving; "
                                          r"a local model is served from the MLflow registry"):
        load_run_config(path)


def test_prompts_only_data_needs_a_task_suite_with_answers() -> None:
    """Refused when the config loads, not at evaluate after the distillation job has run."""
    tune = BedrockTuneConfig(
        base_model="amazon.nova-micro-v1:0:128k", role_arn="arn:aws:iam::123456789012:role/bedrock-ft",
        customization_type="DISTILLATION", teacher_model="amazon.nova-pro-v1:0",
    )
    with pytest.raises(ValidationError, match="cannot score the task suite task: give that suite a source"):
        RunConfig(name="x", data={"source": "d.jsonl", "kind": "prompt"}, tune=tune)
    suites = [{"name": "task", "kind": "task", "source": "answers.jsonl"}]
    config = RunConfig(name="x", data={"source": "d.jsonl", "kind": "prompt"}, tune=tune, evaluation={"suites": suites})
    assert config.evaluation.suites[0].source == "answers.jsonl"


def test_prompts_only_data_is_for_a_distillation_only() -> None:
    suites = {"suites": [{"name": "task", "kind": "task", "source": "answers.jsonl"}]}
    fine_tuning = BedrockTuneConfig(base_model="amazon.nova-micro-v1:0:128k", role_arn="arn:aws:iam::123456789012:role/r")
    with pytest.raises(ValidationError, match="a Bedrock FINE_TUNING job needs the answers: leave data.kind unset"):
        RunConfig(name="x", data={"source": "d.jsonl", "kind": "prompt"}, tune=fine_tuning, evaluation=suites)
    with pytest.raises(ValidationError, match="the local backend needs the answers"):
        RunConfig(name="x", data={"source": "d.jsonl", "kind": "prompt"}, tune={"backend": "local", "base_model": "m"},
                  evaluation=suites)
