"""Applying the automations against a real Prefect server: idempotent, and the channel follows the settings."""

from __future__ import annotations

import pytest
from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from pydantic import SecretStr

from flows.automations import APPROVAL_NEEDED, BLOCK_NAME, RUN_FAILED, apply_automations
from tuneline.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.service]


def test_a_webhook_setting_sends_through_a_saved_block_and_reapplying_updates_in_place(prefect_server: None) -> None:
    settings = Settings(_env_file=None, notify_webhook_url=SecretStr("http://127.0.0.1:9/hook"))  # type: ignore[call-arg]
    first = apply_automations(settings)
    block = CustomWebhookNotificationBlock.load(BLOCK_NAME)
    assert block.url == "http://127.0.0.1:9/hook"
    assert block.json_data == {"subject": "{{subject}}", "body": "{{body}}"}
    for automation in first:
        [action] = automation.actions
        assert action.type == "send-notification"

    again = apply_automations(settings.model_copy(update={"notify_webhook_url": SecretStr("http://127.0.0.1:9/new")}))
    assert [a.id for a in again] == [a.id for a in first]
    assert CustomWebhookNotificationBlock.load(BLOCK_NAME).url == "http://127.0.0.1:9/new"
    assert {Automation.read(name=n).id for n in (RUN_FAILED, APPROVAL_NEEDED)} == {a.id for a in first}


def test_without_a_channel_or_the_notify_deployment_applying_fails_clearly(prefect_server: None) -> None:
    with pytest.raises(ValueError, match="prefect deploy --all"):
        apply_automations(Settings(_env_file=None))  # type: ignore[call-arg]
