"""Notifications as Prefect automations, applied from code: a run failed; a run waits for approval.

``apply_automations`` is idempotent (create or update by name) and is run by ``make deploy`` /
``tuneline automations apply`` after the deployments exist. Where notifications go is a setting:

- ``TUNELINE_NOTIFY_SLACK_WEBHOOK_URL``: a Slack block, sent by the Prefect server itself;
- ``TUNELINE_NOTIFY_WEBHOOK_URL``: a custom-webhook block POSTing ``{"subject", "body"}`` as JSON;
- neither (the local default): the automation runs the ``notify`` deployment, which writes the
  message to its log.

The blocks are saved under fixed names, so changing a URL and applying again updates them.
"""

from __future__ import annotations

from uuid import UUID

from prefect import get_client
from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.events.actions import ActionTypes, RunDeployment, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from tuneline.settings import Settings

__all__ = [
    "APPROVAL_NEEDED",
    "BLOCK_NAME",
    "NOTIFY_DEPLOYMENT",
    "RUN_FAILED",
    "TUNELINE_TAG",
    "apply_automations",
    "automation_specs",
    "save_notification_block",
]

RUN_FAILED = "tuneline: run failed"
APPROVAL_NEEDED = "tuneline: approval needed"
BLOCK_NAME = "tuneline-notifications"
NOTIFY_DEPLOYMENT = "notify/notify"
# Every deployment in prefect.yaml but `notify` carries this tag, so a failing notification
# cannot notify about itself in a loop.
TUNELINE_TAG = "tuneline"

_FAILED_SUBJECT = "Tuneline: {{ flow.name }} run {{ flow_run.name }} is {{ flow_run.state.name }}"
_FAILED_BODY = (
    "{{ flow.name }} run {{ flow_run.name }} ended {{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
    "{{ flow_run|ui_url }}"
)
_PAUSED_SUBJECT = "Tuneline: {{ flow_run.name }} waits for approval"
_PAUSED_BODY = (
    "A candidate waits for a reviewer: press Resume at {{ flow_run|ui_url }}\n"
    "or run: tuneline approve {{ flow_run.id }} --reviewer NAME"
)


def save_notification_block(settings: Settings) -> UUID | None:
    """Save the Slack or webhook block the settings ask for; None for the local default (the log)."""
    if settings.notify_slack_webhook_url is not None:
        block = SlackWebhook(url=settings.notify_slack_webhook_url)
    elif settings.notify_webhook_url is not None:
        block = CustomWebhookNotificationBlock(
            name=BLOCK_NAME,
            url=settings.notify_webhook_url.get_secret_value(),
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        )
    else:
        return None
    return block.save(BLOCK_NAME, overwrite=True)


def _actions(block_id: UUID | None, notify_deployment_id: UUID | None, subject: str, body: str) -> list[ActionTypes]:
    if block_id is not None:
        return [SendNotification(block_document_id=block_id, subject=subject, body=body)]
    if notify_deployment_id is None:
        raise ValueError(f"no notification block and no {NOTIFY_DEPLOYMENT!r} deployment: run `prefect deploy --all` first")
    return [
        RunDeployment(
            source="selected",
            deployment_id=notify_deployment_id,
            parameters={"flow_run": "{{ event.resource.id }}", "event": "{{ event.event }}"},
        )
    ]


def automation_specs(block_id: UUID | None, notify_deployment_id: UUID | None) -> list[Automation]:
    """The two automations; each notifies through the block when there is one, else the log."""
    failed = Automation(
        name=RUN_FAILED,
        description="A Tuneline deployment run failed or crashed.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.tag.{TUNELINE_TAG}", "prefect.resource.role": "tag"},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=_actions(block_id, notify_deployment_id, _FAILED_SUBJECT, _FAILED_BODY),
    )
    paused = Automation(
        name=APPROVAL_NEEDED,
        description="A lifecycle run paused for a human decision (the approve stage).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Paused"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": "approve"},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=_actions(block_id, notify_deployment_id, _PAUSED_SUBJECT, _PAUSED_BODY),
    )
    return [failed, paused]


def _notify_deployment_id() -> UUID | None:
    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(NOTIFY_DEPLOYMENT).id
        except ObjectNotFound:
            return None


def apply_automations(settings: Settings) -> list[Automation]:
    """Create or update the automations (by name) on the current Prefect server."""
    block_id = save_notification_block(settings)
    applied = []
    for spec in automation_specs(block_id, _notify_deployment_id() if block_id is None else None):
        try:
            existing = Automation.read(name=spec.name)
        except ValueError:
            existing = None
        if existing is None:
            applied.append(spec.create())
            continue
        updated = existing.model_copy(
            update={"description": spec.description, "trigger": spec.trigger, "actions": spec.actions, "enabled": True}
        )
        updated.update()
        applied.append(updated)
    return applied
