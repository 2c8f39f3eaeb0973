"""Serving a promoted Bedrock custom model: provisioned throughput, or an on-demand deployment.

Both are keyed by a stable name per registered model, and both can be re-pointed at another custom
model of the same base (``UpdateProvisionedModelThroughput`` / ``UpdateCustomModelDeployment``), so
promotion and rollback are the same operation: "make NAME serve MODEL_ARN, and wait until it does".
Creating is idempotent too: an existing resource with that name is reused, and the create call
carries a ``clientRequestToken`` derived from (name, model), so a retried create makes one resource.

Provisioned throughput bills by the hour until deleted and takes 20-30 minutes to come up; that is
why serving is off by default and why waiting backs off up to minutes between polls.

Evaluation needs an endpoint too: Bedrock invokes a custom model only through provisioned throughput
or a custom model deployment, never by the custom model's own ARN. ``serve_for_evaluation`` uses an
endpoint that already serves the model (the champion's, say) and leaves it alone, or makes one for
the evaluation and deletes it afterwards; it buys provisioned throughput only when the config opts in.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tuneline.backends.bedrock.api import BedrockCaller, BedrockServiceError, Sleep
from tuneline.config import PromotionConfig
from tuneline.errors import ConfigError, EvaluationError, PromotionError, TunelineError

__all__ = [
    "ServingEndpoint",
    "ServingKind",
    "delete_custom_model_deployment",
    "delete_provisioned_throughput",
    "ensure_custom_model_deployment",
    "ensure_provisioned_throughput",
    "ensure_serving",
    "evaluation_serving_name",
    "is_custom_model_arn",
    "serve_for_evaluation",
    "serving_name",
]

_log = logging.getLogger(__name__)

ServingKind = Literal["provisioned-throughput", "on-demand-deployment"]
_NOT_FOUND = "ResourceNotFoundException"
OPT_IN = "evaluation.allow_provisioned_throughput"
"""The config key that lets an evaluation buy provisioned throughput."""


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


@dataclass(frozen=True)
class _Purpose:
    """Whom an endpoint is made for: the error raised, and what to do once it settles."""

    error: type[TunelineError]
    again: str


_PROMOTION = _Purpose(PromotionError, "promote again")
_EVALUATION = _Purpose(EvaluationError, "evaluate again")


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
    delete: str
    list: str
    summaries: str  # the list of endpoints in list responses
    name_key: str  # an endpoint's name in a list summary
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
    update="update_provisioned_model_throughput", delete="delete_provisioned_model_throughput",
    list="list_provisioned_model_throughputs", summaries="provisionedModelSummaries",
    name_key="provisionedModelName", id_param="provisionedModelId",
    arn_key="provisionedModelArn", update_param="desiredModelId", ready="InService",
)
_DEPLOYMENT = _EndpointApi(
    kind="on-demand-deployment", what="custom model deployment",
    get="get_custom_model_deployment", create="create_custom_model_deployment",
    update="update_custom_model_deployment", delete="delete_custom_model_deployment",
    list="list_custom_model_deployments", summaries="modelDeploymentSummaries",
    name_key="customModelDeploymentName", id_param="customModelDeploymentIdentifier",
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
    purpose: _Purpose = _PROMOTION,
) -> ServingEndpoint:
    """Create endpoint NAME for ``model_arn`` (with ``create_params``), or re-point the existing
    one; then wait until it serves ``model_arn``."""
    current = _get(call, api.get, name, **{api.id_param: name})
    if current is None:
        arn = call(api.create, subject=name, **create_params)[api.arn_key]
        _log.info("creating %s %s for %s", api.what, name, model_arn)
    else:
        arn = current[api.arn_key]
        _refuse_failed(current, f"{api.what} {name}", current.get("failureMessage"), purpose)
        check_existing(current)
        if model_arn not in (current["modelArn"], api.pending_model(current)):
            if not api.settled(current):
                # Re-pointing an endpoint that is still changing risks a conflict: let it settle first.
                _wait_for(call, api.get, {api.id_param: arn}, name, wait, api.settled, api.ready, purpose)
            call(api.update, subject=name, **{api.id_param: arn, api.update_param: model_arn})
            _log.info("re-pointing %s %s to %s", api.what, name, model_arn)
    return _settle(api, call, wait, name, arn, model_arn, purpose)


def _settle(
    api: _EndpointApi, call: BedrockCaller, wait: _Wait, name: str, arn: str, model_arn: str, purpose: _Purpose
) -> ServingEndpoint:
    """Wait until endpoint ``arn`` serves ``model_arn`` and takes requests."""
    final = _wait_for(
        call, api.get, {api.id_param: arn}, name, wait,
        lambda r: api.settled(r) and r["modelArn"] == model_arn, f"{api.ready} serving {model_arn}", purpose,
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
    return _delete(BedrockCaller(client, sleep=sleep), _THROUGHPUT, name)


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
    return _delete(BedrockCaller(client, sleep=sleep), _DEPLOYMENT, name)


# --- serving a custom model for an evaluation -----------------------------------------------------
def is_custom_model_arn(model_id: str) -> bool:
    """A custom model's own ARN, which Bedrock Runtime does not take as a ``modelId``."""
    return ":custom-model/" in model_id


def evaluation_serving_name(model_name: str, model_arn: str) -> str:
    """The endpoint an evaluation makes for ``model_arn``: one name per model, so a retried
    evaluation finds (and then deletes) the one an interrupted run left behind."""
    digest = hashlib.sha256(model_arn.encode()).hexdigest()[:12]
    return f"{serving_name(model_name)[:44].rstrip('-_')}-eval-{digest}"


@contextmanager
def serve_for_evaluation(
    client: Any,
    model_arn: str,
    serving: ServingKind,
    *,
    model_name: str,
    label: str,
    base_model: str,
    allow_provisioned_throughput: bool = False,
    sleep: Sleep = time.sleep,
    poll_seconds: float = 30.0,
    max_poll_seconds: float = 120.0,
    timeout_seconds: float = 3600.0,
) -> Iterator[ServingEndpoint]:
    """An endpoint serving custom model ``model_arn`` while the ``with`` block evaluates it.

    An endpoint that already serves the model (the champion's serving, or one made by hand) is
    used and left as it is. Otherwise one is made for the evaluation: an on-demand deployment where
    ``serving`` (the base model's, from the model table) says Bedrock has them, billed per token;
    else, only with ``allow_provisioned_throughput``, a no-commitment provisioned throughput of one
    model unit, billed by the hour until deleted -- without it a ``ConfigError`` names the opt-in
    before anything is made or invoked. What was made is deleted when the block ends, also when it
    fails; a delete that fails raises, naming the endpoint to delete by hand.
    """
    api = _DEPLOYMENT if serving == "on-demand-deployment" else _THROUGHPUT
    call = BedrockCaller(client, sleep=sleep)
    wait = _Wait(poll_seconds=poll_seconds, max_poll_seconds=max_poll_seconds, timeout_seconds=timeout_seconds)
    name = evaluation_serving_name(model_name, model_arn)
    found = _serving_already(call, api, model_arn, skip=name)
    if found is not None:
        existing = found[api.name_key]
        _log.info("evaluating the %s %s through %s %s", label, model_arn, api.what, existing)
        yield _settle(api, call, wait, existing, found[api.arn_key], model_arn, _EVALUATION)
        return
    if api is _THROUGHPUT and not allow_provisioned_throughput:
        raise ConfigError(
            f"evaluating the {label} {model_arn} needs provisioned throughput: Bedrock invokes a custom "
            f"model of {base_model} only through provisioned throughput (it has no on-demand deployments), "
            f"and none serves this model. Provisioned throughput is billed by the hour until it is deleted. "
            f"Set {OPT_IN}: true to let Tuneline buy one no-commitment model unit for this evaluation and "
            f"delete it afterwards, or serve the model yourself (CreateProvisionedModelThroughput) and "
            f"evaluate again: an endpoint that already serves the model is used as it is"
        )
    tags = _tag_list({"tuneline:model": model_name, "tuneline:evaluation": label})
    params: dict[str, Any] = (
        {"provisionedModelName": name, "modelId": model_arn, "modelUnits": 1}
        if api is _THROUGHPUT
        else {
            "modelDeploymentName": name,
            "modelArn": model_arn,
            "description": f"Tuneline evaluation of the {label} of {model_name}; deleted after it",
        }
    )
    # One token per evaluation, not per (name, model): a later evaluation of the same champion, after
    # this one deleted its endpoint, must create a new one rather than be answered with the deleted one.
    params.update(clientRequestToken=_token(name, model_arn, nonce=uuid.uuid4().hex), **tags)
    try:
        try:
            endpoint = _ensure(api, call, wait, name, model_arn, params, purpose=_EVALUATION)
        except BedrockServiceError as exc:
            if api is _DEPLOYMENT and exc.code == "ValidationException":
                raise EvaluationError(
                    f"{exc}. AWS deploys a Nova custom model on demand only if it was customized on or "
                    f"after 2025-07-16; an older one needs provisioned throughput: serve it "
                    f"(CreateProvisionedModelThroughput) and evaluate again, an endpoint that already "
                    f"serves the model is used as it is"
                ) from exc
            raise
        yield endpoint
    except BaseException as exc:
        _release(call, api, name, failed=exc)
        raise
    _release(call, api, name)


def _serving_already(call: BedrockCaller, api: _EndpointApi, model_arn: str, skip: str) -> dict[str, Any] | None:
    """An endpoint other than ``skip`` that serves ``model_arn`` (or is coming up to); ready ones first."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"modelArnEquals": model_arn}
    while True:
        page = call(api.list, subject=model_arn, **params)
        found += [
            summary
            for summary in page.get(api.summaries, [])
            if summary[api.name_key] != skip
            and summary["status"] != "Failed"
            and summary["modelArn"] == model_arn
            and summary.get("desiredModelArn", model_arn) == model_arn  # not being re-pointed away
        ]
        if not page.get("nextToken"):
            break
        params["nextToken"] = page["nextToken"]
    found.sort(key=lambda summary: summary["status"] != api.ready)
    return found[0] if found else None


def _release(call: BedrockCaller, api: _EndpointApi, name: str, failed: BaseException | None = None) -> None:
    """Delete the endpoint an evaluation made; a delete that fails says how to delete it by hand."""
    try:
        deleted = _delete(call, api, name)
    except TunelineError as exc:
        billed = ", which is billed by the hour until it is deleted" if api is _THROUGHPUT else ""
        flag = re.sub(r"([A-Z])", r"-\1", api.id_param).lower()
        command = f"aws bedrock {api.delete.replace('_', '-')} --{flag} {name}"
        earlier = f" (the evaluation itself had failed: {failed})" if failed is not None else ""
        raise EvaluationError(
            f"could not delete the evaluation's {api.what} {name}{billed}: {str(exc).rstrip('.')}. "
            f"Delete it by hand: {command}{earlier}"
        ) from exc
    if deleted:
        _log.info("deleted the evaluation's %s %s", api.what, name)


# --- shared ------------------------------------------------------------------------------------------
def _updating(response: dict[str, Any]) -> bool:
    return (response.get("updateDetails") or {}).get("updateStatus") == "Updating"


def _token(name: str, model_arn: str, nonce: str = "") -> str:
    seed = f"{name}\n{model_arn}" + (f"\n{nonce}" if nonce else "")
    return "tuneline-" + hashlib.sha256(seed.encode()).hexdigest()[:40]


def _get(call: BedrockCaller, operation: str, name: str, **params: str) -> dict[str, Any] | None:
    try:
        return call(operation, subject=name, **params)
    except BedrockServiceError as exc:
        if exc.code == _NOT_FOUND:
            return None
        raise


def _delete(call: BedrockCaller, api: _EndpointApi, name: str) -> bool:
    try:
        call(api.delete, subject=name, **{api.id_param: name})
    except BedrockServiceError as exc:
        if exc.code == _NOT_FOUND:
            return False
        raise
    return True


def _refuse_failed(
    response: dict[str, Any], what: str, message: str | None, purpose: _Purpose = _PROMOTION
) -> None:
    update = response.get("updateDetails") or {}
    if response["status"] == "Failed" or update.get("updateStatus") == "UpdateFailed":
        raise purpose.error(f"{what} failed: {message or 'Bedrock gave no failure message'}")


def _wait_for(
    call: BedrockCaller,
    operation: str,
    params: dict[str, str],
    name: str,
    wait: _Wait,
    done: Callable[[dict[str, Any]], bool],
    goal: str,
    purpose: _Purpose = _PROMOTION,
) -> dict[str, Any]:
    """Poll with exponential back-off until ``done``; Failed raises with Bedrock's message."""
    waited = 0.0
    interval = wait.poll_seconds
    what = operation.removeprefix("get_").replace("_", " ")
    while True:
        response = call(operation, subject=name, **params)
        _refuse_failed(response, f"{what} {name}", response.get("failureMessage"), purpose)
        if done(response):
            return response
        if waited >= wait.timeout_seconds:
            raise purpose.error(
                f"{what} {name} is still {response['status']} after {waited:.0f}s waiting for {goal}; "
                f"it may still finish: check it in the Bedrock console and {purpose.again}"
            )
        step = min(interval, wait.timeout_seconds - waited) or interval
        call.sleep(step)
        waited += step
        interval = min(interval * 2, wait.max_poll_seconds)
