"""`tuneline generate`: try a model on a prompt or in a chat, by registry alias or by its weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tuneline_cli.main as cli
from tuneline.backends.local.generation import LocalGenerator
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import GenerationConfig
from tuneline.records import ChatRecord, Message
from tuneline.settings import Settings
from tuneline.tags import BACKEND_TAG, BASE_MODEL_TAG, MODEL_URI_TAG

CORPUS = ["where is my order", "my order is late", "refund please", "the order arrived broken"]
SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("generate") / "tiny", CORPUS, **SIZE)


@pytest.fixture
def config_file(model_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"name: tickets\ndata: {{source: unused.jsonl}}\ntune: {{backend: local, base_model: '{model_dir}'}}\n"
        "evaluation: {generation: {max_new_tokens: 8}}\n"
    )
    return path


def expected_answer(model_dir: Path, prompt: str, max_new_tokens: int = 8) -> str:
    generator = LocalGenerator(model_dir, label="direct")
    try:
        record = ChatRecord(messages=(Message(role="user", content=prompt), Message(role="assistant", content="-")))
        return generator.generate([record], GenerationConfig(max_new_tokens=max_new_tokens, batch_size=1))[0].text
    finally:
        generator.close()


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli.app, list(args), input=stdin)


def test_weights_with_their_config_answer_the_prompt(model_dir: Path, config_file: Path) -> None:
    result = run("generate", "--model", str(model_dir), "--config", str(config_file), "--prompt", "where is my order",
                 "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["answer"] == expected_answer(model_dir, "where is my order")
    assert doc["output_tokens"] is not None and doc["output_tokens"] <= 8


def test_library_progress_bars_stay_out_of_the_output_unless_debug(model_dir: Path, config_file: Path) -> None:
    """A real process, as a user runs it: the quieting must happen before transformers is imported."""
    from tuneline_cli.failures import _DEBUG_ENV, _QUIET_ENV

    command = [str(Path(sys.executable).parent / "tuneline"), "generate", "--model", str(model_dir), "--config",
               str(config_file), "--prompt", "where is my order"]
    # as a user's shell has it: without what an earlier in-process CLI call set in this process's environment
    env = {k: v for k, v in os.environ.items() if k not in _QUIET_ENV and k != _DEBUG_ENV}
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True, env=env)
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.strip() == expected_answer(model_dir, "where is my order").strip()
    # the same command with --debug shows what was kept out: transformers' weight-loading bar
    debug = subprocess.run([command[0], "--debug", *command[1:]], capture_output=True, text=True, timeout=300,
                           check=True, env=env)
    assert "Loading weights" in debug.stderr and "it/s" in debug.stderr, debug.stderr


def test_weights_without_a_config_is_a_clear_error(model_dir: Path) -> None:
    result = run("generate", "--model", str(model_dir), "--prompt", "hi")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--config" in result.stderr


def test_a_chat_in_a_terminal_answers_each_turn(
    model_dir: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "sys", types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True)))
    result = run("generate", "--model", str(model_dir), "--config", str(config_file),
                 stdin="where is my order\nrefund please\n\n")
    assert result.exit_code == 0, result.output
    replies = [line for line in result.stdout.splitlines() if line.startswith(f"{model_dir}> ")]
    assert len(replies) == 2
    assert replies[0] == f"{model_dir}> {expected_answer(model_dir, 'where is my order')}"


def test_without_a_terminal_a_prompt_is_needed(model_dir: Path, config_file: Path) -> None:
    result = run("generate", "--model", str(model_dir), "--config", str(config_file), stdin="")
    assert result.exit_code == 2 and "--prompt" in result.stderr


@pytest.mark.service
def test_the_champion_by_its_alias(stack_settings: Settings, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneline.stages.context import StageContext

    monkeypatch.setattr(cli, "get_settings", lambda: stack_settings)
    name = f"try-{uuid.uuid4().hex[:6]}"
    client = StageContext(stack_settings).mlflow
    client.create_registered_model(name)
    version = client.create_model_version(
        name, f"s3://{stack_settings.s3_bucket}/models/{name}/",  # MLflow takes no bare local path as source
        tags={MODEL_URI_TAG: str(model_dir), BACKEND_TAG: "local", BASE_MODEL_TAG: str(model_dir)},
    )
    client.set_registered_model_alias(name, "champion", version.version)

    result = run("generate", "--model", f"{name}@champion", "--prompt", "refund please", "--max-new-tokens", "8",
                 "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == f"{name}@champion (v{version.version})"
    assert doc["answer"] == expected_answer(model_dir, "refund please")

    missing = run("generate", "--model", f"{name}@nobody", "--prompt", "hi")
    assert missing.exit_code == 2
    assert "no such model" in missing.stderr and "'nobody'" in missing.stderr
