"""Every user error is one line `error: ...` and exit status 2, never a traceback (issue 18 item 6).

The invocations are the ones a new user tried; the ones that name a model or run go to real
services (SeaweedFS, MLflow, a Prefect test server).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import tuneline_cli.main as cli
from tuneline.settings import Settings


def run(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def assert_clean_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_validate_with_an_unknown_format_names_the_field_and_the_choices(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    result = run("validate", "--input", str(data), "--format", "xml")
    assert_clean_user_error(result, "format", "'xml'", "'openai'")


def test_approve_with_a_run_id_that_is_no_uuid() -> None:
    result = run("approve", "not-a-uuid", "--reviewer", "ana", "--token", "t")
    assert_clean_user_error(result, "flow_run_id", "UUID")


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.startswith("tuneline ")


def test_every_option_and_argument_has_help() -> None:
    missing = []

    def walk(command, path: str) -> None:
        for param in command.params:
            if param.name != "help" and not getattr(param, "help", None):
                missing.append(f"{path} {param.name}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(cli.app), "tuneline")
    assert not missing


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Settings:
        raise RuntimeError("settings exploded")

    monkeypatch.setattr(cli, "get_settings", broken)
    result = run("history")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip().startswith("error: RuntimeError: settings exploded")
    assert "--debug" in result.stderr

    debug = run("--debug", "history")
    assert isinstance(debug.exception, RuntimeError)  # raised, so Python prints its traceback


def test_a_service_that_does_not_answer_is_named_not_a_traceback() -> None:
    import os
    import subprocess
    import sys

    from tuneline.stack.ports import free_stack_ports

    # The installed command in its own process, as a person runs it, against a port nobody listens on.
    nobody = f"http://127.0.0.1:{free_stack_ports()['prefect_port']}/api"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "tuneline"), "approve", str(uuid.uuid4()), "--reviewer", "ana",
         "--token", "not-checked-before-the-run-is-found"],
        env={**os.environ, "PREFECT_API_URL": nobody}, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: a service did not answer"), proc.stderr


# --- against real services --------------------------------------------------------------------
@pytest.fixture
def cli_on_stack(stack_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(cli, "get_settings", lambda: stack_settings)
    return stack_settings


@pytest.mark.service
def test_rollback_of_a_model_that_does_not_exist(cli_on_stack: Settings) -> None:
    result = run("rollback", f"no-such-model-{uuid.uuid4().hex[:6]}")
    assert_clean_user_error(result, "no such model")


@pytest.mark.service
def test_rollback_of_a_model_without_a_previous_version(cli_on_stack: Settings) -> None:
    from tuneline.stages.context import StageContext

    name = f"only-one-{uuid.uuid4().hex[:6]}"
    client = StageContext(cli_on_stack).mlflow
    client.create_registered_model(name)
    version = client.create_model_version(name, f"s3://{cli_on_stack.s3_bucket}/models/{name}")
    client.set_registered_model_alias(name, "champion", version.version)

    result = run("rollback", name)
    assert_clean_user_error(result, "no 'previous' version", f"champion is v{version.version}", "--to-version")


@pytest.mark.service
def test_history_of_a_model_that_was_never_evaluated(cli_on_stack: Settings) -> None:
    result = run("history", "--model", "no-such-model")
    assert_clean_user_error(result, "no such model 'no-such-model'")


@pytest.mark.service
def test_audit_of_a_model_nobody_registered_says_no_such_model(cli_on_stack: Settings) -> None:
    result = run("audit", "--model", "no-such-model")
    assert_clean_user_error(result, "no such model 'no-such-model'")


@pytest.mark.service
def test_history_json_is_one_document(cli_on_stack: Settings) -> None:
    result = run("history", "--json")
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), list)


@pytest.mark.service
@pytest.mark.slow
def test_approve_an_unknown_run(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = str(uuid.uuid4())
    result = run("approve", unknown, "--reviewer", "ana", "--token", "not-checked-before-the-run-is-found")
    assert_clean_user_error(result, f"no such flow run {unknown}")


def test_run_with_a_model_past_its_end_of_life_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """No service is running here: the refusal comes before the flow, prepare or any AWS call."""
    config = tmp_path / "haiku.yaml"
    config.write_text(
        "name: tickets\ndata: {source: tickets.jsonl}\n"
        "tune: {backend: bedrock, base_model: anthropic.claude-3-haiku-20240307-v1:0:200k, "
        "role_arn: 'arn:aws:iam::123456789012:role/TunelineBedrock'}\n"
    )
    result = run("run", str(config))
    assert_clean_user_error(result, "end of life on 2026-09-10")


def test_run_distilling_from_a_teacher_past_its_end_of_life_is_refused_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "distil.yaml"
    config.write_text(
        "name: tickets\ndata: {source: tickets.jsonl}\n"
        "tune: {backend: bedrock, base_model: amazon.nova-micro-v1:0:128k, customization_type: DISTILLATION, "
        "teacher_model: us.amazon.nova-premier-v1:0, "
        "role_arn: 'arn:aws:iam::123456789012:role/TunelineBedrock'}\n"
    )
    result = run("run", str(config))
    assert_clean_user_error(result, "end of life on 2026-09-14")


def test_the_lifecycles_first_stage_refuses_a_model_past_its_end_of_life(tmp_path: Path) -> None:
    """Scheduled runs do not go through the CLI: resolving the base model, before prepare, refuses it."""
    from tuneline.backends.bedrock.models import ModelRetiredError
    from tuneline.config import RunConfig
    from tuneline.stages.context import StageContext
    from tuneline.stages.tune import resolve_base_model

    config = RunConfig.model_validate({
        "name": "tickets", "data": {"source": "tickets.jsonl"},
        "tune": {"backend": "bedrock", "base_model": "anthropic.claude-3-haiku-20240307-v1:0:200k",
                 "role_arn": "arn:aws:iam::123456789012:role/TunelineBedrock"},
    })
    with pytest.raises(ModelRetiredError, match="end of life on 2026-09-10"):
        resolve_base_model(StageContext(Settings(_env_file=None, home=tmp_path)), config)  # type: ignore[call-arg]
