"""The local notification channel: a flow run whose log carries the message.

With no Slack or webhook URL configured, the automations in ``flows.automations`` start this
flow; the message lands in the worker's output and in the Prefect UI under this flow's runs.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_client, get_run_logger

from tuneline.settings import get_settings

__all__ = ["notify", "notification_text"]


def notification_text(
    event: str, flow_name: str, run_name: str, run_id: UUID, state: str, message: str, ui_url: str
) -> str:
    url = f"{ui_url}/runs/flow-run/{run_id}"
    if event.endswith(".Paused"):
        return (
            f"{flow_name} run {run_name} waits for approval: press Resume at {url} "
            f"or run `tuneline approve {run_id} --reviewer NAME`"
        )
    detail = f": {message}" if message else ""
    return f"{flow_name} run {run_name} is {state}{detail} ({url})"


@flow(name="notify", persist_result=False)
def notify(flow_run: str, event: str) -> str:
    """Write a notification about a flow run to the log.

    Args:
        flow_run: the flow run's id, or the resource id of an event about it (prefect.flow-run.<id>).
        event: what happened, e.g. prefect.flow-run.Failed or prefect.flow-run.Paused.
    """
    run_id = UUID(flow_run.removeprefix("prefect.flow-run."))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        flow_name = client.read_flow(run.flow_id).name
    state = run.state.name if run.state else "unknown"
    message = (run.state.message or "") if run.state else ""
    text = notification_text(event, flow_name, run.name, run_id, state, message, get_settings().prefect_ui_url)
    get_run_logger().warning("%s", text)
    return text
