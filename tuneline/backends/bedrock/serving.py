"""Serving a promoted Bedrock custom model: provisioned throughput, or an on-demand deployment.

Both are keyed by a stable name per registered model, and both can be re-pointed at another custom
model of the same base (``UpdateProvisionedModelThroughput`` / ``UpdateCustomModelDeployment``), so
promotion and rollback are the same operation: "make NAME serve MODEL_ARN, and wait until it does".
Creating is idempotent too: an existing resource with that name is reused, and the create call
carries a ``clientRequestToken`` derived from (name, model), so a retried create makes one resource.

Provisioned throughput bills by the hour until deleted and takes 20-30 minutes to come up; that is
why serving is off by default and why waiting backs off up to minutes between polls.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tuneline.backends.bedrock.api import BedrockCaller, BedrockServiceError, Sleep
from tuneline.config import PromotionConfig
from tuneline.errors import PromotionError

__all__ = [
    "ServingEndpoint",
    "ServingKind",
    "delete_custom_model_deployment",
    "delete_provisioned_throughput",
    "ensure_custom_model_deployment",
    "ensure_provisioned_throughput",
    "ensure_serving",
    "serving_name",
]

_log = logging.getLogger(__name__)

ServingKind = Literal["provisioned-throughput", "on-demand-deployment"]
_NOT_FOUND = "ResourceNotFoundException"


class ServingEndpoint(BaseModel):
    """What to record on the model version: the ARN to send inference requests to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ServingKind
    name: str
    arn: str
    model_arn: str
    status: str


class _Wait(BaseModel):
    model_config = ConfigDict(frozen=True)

    poll_seconds: float = 30.0
    max_poll_seconds: float = 300.0
    timeout_seconds: float = 3600.0


def serving_name(model_name: str) -> str:
    """A name valid for both resource kinds (``([0-9a-zA-Z][_-]?)+``, at most 63 characters)."""
    slug = re.sub(r"[^0-9A-Za-z]+", "-", model_name).strip("-")[:63].rstrip("-")
    if not slug:
        raise PromotionError(
            f"model name {model_name!r} has no letters or digits to name its serving resource"
        )
    return slug


def ensure_serving(
    client: Any,
    promotion: PromotionConfig,
    name: str,
    model_arn: str,
    *,
    tags: dict[str, str] | None = None,
    sleep: Sleep = time.sleep,
    poll_seconds: float = 30.0,
    max_poll_seconds: float = 300.0,
    timeout_seconds: float = 3600.0,
) -> ServingEndpoint | None:
    """Serve ``model_arn`` the way ``promotion.serving`` says; None when serving is off."""
    wait = {
        "poll_seconds": poll_seconds,
        "max_poll_seconds": max_poll_seconds,
        "timeout_seconds": timeout_seconds,
    }
    if promotion.serving == "provisioned-throughput":
        return ensure_provisioned_throughput(
            client, name, model_arn, promotion.provisioned_model_units, tags=tags, sleep=sleep, **wait
        )
    if promotion.serving == "on-demand-deployment":
        return ensure_custom_model_deployment(client, name, model_arn, tags=tags, sleep=sleep, **wait)
    return None


# --- the two kinds of endpoint --------------------------------------------------------------------
@dataclass(frozen=True)
class _EndpointApi:
    """How one kind of endpoint is read, created, re-pointed and deleted: the same steps, named
    differently by the two APIs."""

    kind: ServingKind
    what: str  # in messages
    get: str
    create: str
    update: str
    id_param: str  # the name or ARN parameter of get/update/delete
    arn_key: str  # the endpoint's ARN in get/create responses
    update_param: str  # the new model's ARN in the update call
    ready: str  # the status of an endpoint that serves and takes changes

    def pending_model(self, response: dict[str, Any]) -> str | None:
        """The model an update in flight is moving the endpoint to."""
        if self.kind == "provisioned-throughput":
            return response["desiredModelArn"]
        return (response.get("updateDetails") or {}).get("modelArn")

    def settled(self, response: dict[str, Any]) -> bool:
        return response["status"] == self.ready and not _updating(response)


_THROUGHPUT = _EndpointApi(
    kind="provisioned-throughput", what="provisioned throughput",
    get="get_provisioned_model_throughput", create="create_provisioned_model_throughput",
    update="update_provisioned_model_throughput", id_param="provisionedModelId",
    arn_key="provisionedModelArn", update_param="desiredModelId", ready="InService",
)
_DEPLOYMENT = _EndpointApi(
    kind="on-demand-deployment", what="custom model deployment",
    get="get_custom_model_deployment", create="create_custom_model_deployment",
    update="update_custom_model_deployment", id_param="customModelDeploymentIdentifier",
    arn_key="customModelDeploymentArn", update_param="modelArn", ready="Active",
)


def _ensure(
    api: _EndpointApi,
    call: BedrockCaller,
    wait: _Wait,
    name: str,
    model_arn: str,
    create_params: dict[str, Any],
    check_existing: Callable[[dict[str, Any]], None] = lambda current: None,
) -> ServingEndpoint:
    """Create endpoint NAME for ``model_arn`` (with ``create_params``), or re-point the existing
    one; then wait until it serves ``model_arn``."""
    current = _get(call, api.get, name, **{api.id_param: name})
    if current is None:
        arn = call(api.create, subject=name, **create_params)[api.arn_key]
        _log.info("creating %s %s for %s", api.what, name, model_arn)
    else:
        arn = current[api.arn_key]
        _refuse_failed(current, f"{api.what} {name}", current.get("failureMessage"))
        check_existing(current)
        if model_arn not in (current["modelArn"], api.pending_model(current)):
            if not api.settled(current):
                # Re-pointing an endpoint that is still changing risks a conflict: let it settle first.
                _wait_for(call, api.get, {api.id_param: arn}, name, wait, api.settled, api.ready)
            call(api.update, subject=name, **{api.id_param: arn, api.update_param: model_arn})
            _log.info("re-pointing %s %s to %s", api.what, name, model_arn)
    final = _wait_for(
        call, api.get, {api.id_param: arn}, name, wait,
        lambda r: api.settled(r) and r["modelArn"] == model_arn, f"{api.ready} serving {model_arn}",
    )
    return ServingEndpoint(kind=api.kind, name=name, arn=arn, model_arn=final["modelArn"], status=final["status"])


def _tag_list(tags: dict[str, str] | None) -> dict[str, Any]:
    return {"tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]} if tags else {}


# --- provisioned throughput ----------------------------------------------------------------------
def ensure_provisioned_throughput(
    client: Any,
    name: str,
    model_arn: str,
    model_units: int,
    *,
    commitment_duration: Literal["OneMonth", "SixMonths"] | None = None,
    tags: dict[str, str] | None = None,
    sleep: Sleep = time.sleep,
    poll_seconds: float = 30.0,
    max_poll_seconds: float = 300.0,
    timeout_seconds: float = 3600.0,
) -> ServingEndpoint:
    """Create provisioned throughput NAME for ``model_arn``, or re-point the existing one; wait."""
    params: dict[str, Any] = {
        "provisionedModelName": name,
        "modelId": model_arn,
        "modelUnits": model_units,
        "clientRequestToken": _token(name, model_arn),
        **({"commitmentDuration": commitment_duration} if commitment_duration else {}),
        **_tag_list(tags),
    }

    def keep_units(current: dict[str, Any]) -> None:
        if current["modelUnits"] != model_units:
            _log.warning(
                "provisioned throughput %s has %s model units, config asks for %s; units cannot be "
                "changed in place, keeping %s",
                name, current["modelUnits"], model_units, current["modelUnits"],
            )

    wait = _Wait(poll_seconds=poll_seconds, max_poll_seconds=max_poll_seconds, timeout_seconds=timeout_seconds)
    return _ensure(_THROUGHPUT, BedrockCaller(client, sleep=sleep), wait, name, model_arn, params, keep_units)


def delete_provisioned_throughput(client: Any, name: str, *, sleep: Sleep = time.sleep) -> bool:
    """Delete NAME (billing stops); False when there was none."""
    return _delete(
        BedrockCaller(client, sleep=sleep),
        "delete_provisioned_model_throughput",
        name,
        provisionedModelId=name,
    )


# --- on-demand custom model deployment (Nova) ------------------------------------------------------
def ensure_custom_model_deployment(
    client: Any,
    name: str,
    model_arn: str,
    *,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    sleep: Sleep = time.sleep,
    poll_seconds: float = 30.0,
    max_poll_seconds: float = 300.0,
    timeout_seconds: float = 3600.0,
) -> ServingEndpoint:
    """Create on-demand deployment NAME for ``model_arn``, or re-point the existing one; wait."""
    params: dict[str, Any] = {
        "modelDeploymentName": name,
        "modelArn": model_arn,
        "clientRequestToken": _token(name, model_arn),
        **({"description": description} if description else {}),
        **_tag_list(tags),
    }
    wait = _Wait(poll_seconds=poll_seconds, max_poll_seconds=max_poll_seconds, timeout_seconds=timeout_seconds)
    return _ensure(_DEPLOYMENT, BedrockCaller(client, sleep=sleep), wait, name, model_arn, params)


def delete_custom_model_deployment(client: Any, name: str, *, sleep: Sleep = time.sleep) -> bool:
    """Delete deployment NAME; False when there was none."""
    return _delete(
        BedrockCaller(client, sleep=sleep),
        "delete_custom_model_deployment",
        name,
        customModelDeploymentIdentifier=name,
    )


# --- shared ------------------------------------------------------------------------------------------
def _updating(response: dict[str, Any]) -> bool:
    return (response.get("updateDetails") or {}).get("updateStatus") == "Updating"


def _token(name: str, model_arn: str) -> str:
    return "tuneline-" + hashlib.sha256(f"{name}\n{model_arn}".encode()).hexdigest()[:40]


def _get(call: BedrockCaller, operation: str, name: str, **params: str) -> dict[str, Any] | None:
    try:
        return call(operation, subject=name, **params)
    except BedrockServiceError as exc:
        if exc.code == _NOT_FOUND:
            return None
        raise


def _delete(call: BedrockCaller, operation: str, name: str, **params: str) -> bool:
    try:
        call(operation, subject=name, **params)
    except BedrockServiceError as exc:
        if exc.code == _NOT_FOUND:
            return False
        raise
    return True


def _refuse_failed(response: dict[str, Any], what: str, message: str | None) -> None:
    update = response.get("updateDetails") or {}
    if response["status"] == "Failed" or update.get("updateStatus") == "UpdateFailed":
        raise PromotionError(f"{what} failed: {message or 'Bedrock gave no failure message'}")


def _wait_for(
    call: BedrockCaller,
    operation: str,
    params: dict[str, str],
    name: str,
    wait: _Wait,
    done: Callable[[dict[str, Any]], bool],
    goal: str,
) -> dict[str, Any]:
    """Poll with exponential back-off until ``done``; Failed raises with Bedrock's message."""
    waited = 0.0
    interval = wait.poll_seconds
    what = operation.removeprefix("get_").replace("_", " ")
    while True:
        response = call(operation, subject=name, **params)
        _refuse_failed(response, f"{what} {name}", response.get("failureMessage"))
        if done(response):
            return response
        if waited >= wait.timeout_seconds:
            raise PromotionError(
                f"{what} {name} is still {response['status']} after {waited:.0f}s waiting for {goal}; "
                f"it may still finish: check it in the Bedrock console and promote again"
            )
        step = min(interval, wait.timeout_seconds - waited) or interval
        call.sleep(step)
        waited += step
        interval = min(interval * 2, wait.max_poll_seconds)
