"""prefect.yaml is generated from deployments/ and agrees with it; the automations and notifications."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
import yaml

from flows.automations import APPROVAL_NEEDED, RUN_FAILED, TUNELINE_TAG, automation_specs
from flows.deployments import WORK_POOL, render_prefect_yaml
from flows.notify import notification_text
from tuneline.config import load_run_config
from tuneline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}


def test_prefect_yaml_is_in_step_with_deployments_dir() -> None:
    assert (ROOT / "prefect.yaml").read_text() == render_prefect_yaml(ROOT), (
        "prefect.yaml is out of date: run `tuneline deployments render`"
    )


def test_the_deployments_the_platform_needs_exist() -> None:
    found = deployments()
    assert {"manual", "scheduled-retraining", "on-new-data", "rollback", "watch-for-data", "notify", "verify-audit"} <= set(found)
    assert all(d["work_pool"]["name"] == WORK_POOL for d in found.values())
    # every deployment but notify carries the tag the failure automation matches
    assert {n for n, d in found.items() if TUNELINE_TAG in d["tags"]} == set(found) - {"notify"}


def test_the_manual_form_is_filled_in_from_the_reviewed_run_config() -> None:
    manual = deployments()["manual"]
    reviewed = load_run_config(ROOT / "deployments" / "configs" / "support-tickets.yaml")
    assert manual["entrypoint"] == "flows/lifecycle.py:customize_model"
    assert type(reviewed).model_validate(manual["parameters"]["config"]) == reviewed
    assert manual["parameters"]["approval"] == "human"


def test_scheduled_and_event_runs_read_a_reviewed_config() -> None:
    found = deployments()
    scheduled, on_new_data = found["scheduled-retraining"], found["on-new-data"]
    assert scheduled["schedules"][0]["cron"]
    [trigger] = on_new_data["triggers"]
    assert trigger["expect"] == ["tuneline.dataset.arrived"]
    assert trigger["parameters"]["data_source"] == "{{ event.resource.id }}"
    sensor = found["watch-for-data"]["parameters"]
    assert trigger["match"]["tuneline.model"] == sensor["model_name"]
    for spec in (scheduled["parameters"], trigger["parameters"]):
        load_run_config(ROOT / spec["config_path"])


def test_the_audit_is_verified_on_a_schedule_by_a_run_that_notifies_when_it_fails() -> None:
    import inspect

    from flows.audit import verify_audit

    verify = deployments()["verify-audit"]
    assert verify["entrypoint"] == "flows/audit.py:verify_audit"
    [schedule] = verify["schedules"]
    assert schedule["cron"] and schedule["active"]
    assert verify["concurrency_limit"]["limit"] == 1
    assert TUNELINE_TAG in verify["tags"]  # a failed run matches the failure automation
    # every model by default: the deployment passes no parameter the flow would not default
    assert not verify.get("parameters") and inspect.signature(verify_audit.fn).parameters["model_name"].default is None


def test_a_deployment_naming_a_broken_run_config_fails_to_render(tmp_path: Path) -> None:
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "bad.yaml").write_text(
        "name: bad\nentrypoint: flows/retraining.py:retrain\nparameters: {config_path: deployments/missing.yaml}\n"
    )
    with pytest.raises(ConfigError, match="missing.yaml"):
        render_prefect_yaml(tmp_path)


@pytest.mark.parametrize("with_block", [pytest.param(True, id="slack-or-webhook"), pytest.param(False, id="log")])
def test_automations_notify_through_the_block_or_the_notify_flow(with_block: bool) -> None:
    block, notify = (uuid4(), None) if with_block else (None, uuid4())
    failed, paused = automation_specs(block, notify)
    assert (failed.name, paused.name) == (RUN_FAILED, APPROVAL_NEEDED)
    assert "prefect.flow-run.Failed" in failed.trigger.expect
    assert paused.trigger.expect == {"prefect.flow-run.Paused"}
    for automation in (failed, paused):
        [action] = automation.actions
        if with_block:
            assert action.type == "send-notification" and action.block_document_id == block
        else:
            assert action.type == "run-deployment" and action.deployment_id == notify
            assert action.parameters == {"flow_run": "{{ event.resource.id }}", "event": "{{ event.event }}"}


def test_automations_need_a_channel() -> None:
    with pytest.raises(ValueError, match="notify"):
        automation_specs(None, None)


def test_notification_texts_say_what_to_do() -> None:
    run_id = uuid4()
    paused = notification_text("prefect.flow-run.Paused", "approve", "brave-fox", run_id, "Paused", "", "http://ui")
    assert f"http://ui/runs/flow-run/{run_id}" in paused and f"tuneline approve {run_id}" in paused
    failed = notification_text("prefect.flow-run.Failed", "retrain", "calm-owl", run_id, "Failed", "boom", "http://ui")
    assert failed == f"retrain run calm-owl is Failed: boom (http://ui/runs/flow-run/{run_id})"
