"""Bedrock serving for promotion and rollback, driven through botocore's Stubber (no AWS)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st

from tuneline.backends.bedrock.serving import (
    delete_custom_model_deployment,
    delete_provisioned_throughput,
    ensure_custom_model_deployment,
    ensure_provisioned_throughput,
    ensure_serving,
    serving_name,
)
from tuneline.config import PromotionConfig
from tuneline.errors import PromotionError

if TYPE_CHECKING:
    from tests.conftest import SleepRecorder

ACCOUNT = "arn:aws:bedrock:us-west-2:123456789012"
BASE = "anthropic.claude-3-haiku-20240307-v1:0:200k"
MODEL_V1 = f"{ACCOUNT}:custom-model/{BASE}/aaaaaaaaaaaa"
MODEL_V2 = f"{ACCOUNT}:custom-model/{BASE}/bbbbbbbbbbbb"
PT_ARN = f"{ACCOUNT}:provisioned-model/pppppppppppp"
NOVA_V1 = f"{ACCOUNT}:custom-model/amazon.nova-micro-v1:0:128k/cccccccccccc"
NOVA_V2 = f"{ACCOUNT}:custom-model/amazon.nova-micro-v1:0:128k/dddddddddddd"
DEPLOY_ARN = f"{ACCOUNT}:custom-model-deployment/eeeeeeeeeeee"
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def bedrock(stubbed_aws: Callable[..., tuple[Any, Stubber]]) -> tuple[Any, Stubber]:
    return stubbed_aws("bedrock")


def _pt(status: str, model: str, desired: str | None = None, units: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "modelUnits": units,
        "desiredModelUnits": units,
        "provisionedModelName": "support-bot",
        "provisionedModelArn": PT_ARN,
        "modelArn": model,
        "desiredModelArn": desired or model,
        "foundationModelArn": f"arn:aws:bedrock:us-west-2::foundation-model/{BASE}",
        "status": status,
        "creationTime": WHEN,
        "lastModifiedTime": WHEN,
        **extra,
    }


def _deployment(status: str, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "customModelDeploymentArn": DEPLOY_ARN,
        "modelDeploymentName": "support-bot",
        "modelArn": model,
        "createdAt": WHEN,
        "status": status,
        **extra,
    }


def _missing(stubber: Stubber, operation: str, params: dict[str, str]) -> None:
    stubber.add_client_error(operation, "ResourceNotFoundException", "not found", 404, expected_params=params)


# --- provisioned throughput ----------------------------------------------------------------------
def test_create_provisioned_throughput_and_wait_until_in_service(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    _missing(stubber, "get_provisioned_model_throughput", {"provisionedModelId": "support-bot"})
    stubber.add_response(
        "create_provisioned_model_throughput",
        {"provisionedModelArn": PT_ARN},
        {
            "provisionedModelName": "support-bot",
            "modelId": MODEL_V1,
            "modelUnits": 2,
            "clientRequestToken": ANY,
            "tags": [{"key": "tuneline:model", "value": "support-bot"}],
        },
    )
    get = {"provisionedModelId": PT_ARN}
    stubber.add_response("get_provisioned_model_throughput", _pt("Creating", MODEL_V1, units=2), get)
    stubber.add_response("get_provisioned_model_throughput", _pt("Creating", MODEL_V1, units=2), get)
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1, units=2), get)
    endpoint = ensure_provisioned_throughput(
        client, "support-bot", MODEL_V1, 2, tags={"tuneline:model": "support-bot"}, sleep=sleeps
    )
    assert (endpoint.arn, endpoint.model_arn, endpoint.status, endpoint.kind) == (
        PT_ARN,
        MODEL_V1,
        "InService",
        "provisioned-throughput",
    )
    assert sleeps.calls == [30, 60]


def test_existing_throughput_is_repointed_not_recreated(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    stubber.add_response(
        "get_provisioned_model_throughput", _pt("InService", MODEL_V2), {"provisionedModelId": "support-bot"}
    )
    # rollback: point back at v1. No create is queued, so a create would fail the test.
    stubber.add_response(
        "update_provisioned_model_throughput", {}, {"provisionedModelId": PT_ARN, "desiredModelId": MODEL_V1}
    )
    stubber.add_response("get_provisioned_model_throughput", _pt("Updating", MODEL_V2, desired=MODEL_V1))
    # InService but still the old model is not done yet
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V2, desired=MODEL_V1))
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1))
    endpoint = ensure_provisioned_throughput(client, "support-bot", MODEL_V1, 1, sleep=sleeps)
    assert endpoint.model_arn == MODEL_V1
    assert sleeps.calls == [30, 60]


def test_throughput_already_serving_the_model_needs_no_change(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1))
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1))
    assert (
        ensure_provisioned_throughput(client, "support-bot", MODEL_V1, 1, sleep=sleeps).status == "InService"
    )


def test_throughput_busy_updating_elsewhere_is_waited_for_before_repointing(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    v3 = f"{ACCOUNT}:custom-model/{BASE}/cccccccccccc"
    stubber.add_response("get_provisioned_model_throughput", _pt("Updating", MODEL_V1, desired=v3))
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", v3))
    stubber.add_response(
        "update_provisioned_model_throughput", {}, {"provisionedModelId": PT_ARN, "desiredModelId": MODEL_V2}
    )
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V2))
    assert (
        ensure_provisioned_throughput(client, "support-bot", MODEL_V2, 1, sleep=sleeps).model_arn == MODEL_V2
    )


def test_failed_throughput_raises_with_bedrocks_message(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    _missing(stubber, "get_provisioned_model_throughput", {"provisionedModelId": "support-bot"})
    stubber.add_response("create_provisioned_model_throughput", {"provisionedModelArn": PT_ARN})
    stubber.add_response(
        "get_provisioned_model_throughput",
        _pt("Failed", MODEL_V1, failureMessage="Insufficient capacity for model units in us-west-2"),
    )
    with pytest.raises(PromotionError, match="Insufficient capacity for model units in us-west-2"):
        ensure_provisioned_throughput(client, "support-bot", MODEL_V1, 1, sleep=sleeps)


def test_waiting_is_bounded_by_the_timeout(bedrock: tuple[Any, Stubber], sleeps: SleepRecorder) -> None:
    client, stubber = bedrock
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1))
    stubber.add_response("update_provisioned_model_throughput", {})
    for _ in range(4):
        stubber.add_response("get_provisioned_model_throughput", _pt("Updating", MODEL_V1, desired=MODEL_V2))
    with pytest.raises(PromotionError, match=r"still Updating after 100s"):
        ensure_provisioned_throughput(
            client,
            "support-bot",
            MODEL_V2,
            1,
            sleep=sleeps,
            poll_seconds=30,
            max_poll_seconds=40,
            timeout_seconds=100,
        )
    assert sleeps.calls == [30, 40, 30]


def test_throttled_poll_is_retried(bedrock: tuple[Any, Stubber], sleeps: SleepRecorder) -> None:
    client, stubber = bedrock
    stubber.add_client_error("get_provisioned_model_throughput", "ThrottlingException", "Rate exceeded", 400)
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1))
    stubber.add_response("get_provisioned_model_throughput", _pt("InService", MODEL_V1))
    ensure_provisioned_throughput(client, "support-bot", MODEL_V1, 1, sleep=sleeps)
    # one retry back-off, then the next call waits out the pace the throttling left; no poll sleep
    assert len(sleeps.calls) == 2
    assert all(s <= 2 for s in sleeps.calls)


def test_delete_throughput_is_idempotent(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_response("delete_provisioned_model_throughput", {}, {"provisionedModelId": "support-bot"})
    _missing(stubber, "delete_provisioned_model_throughput", {"provisionedModelId": "support-bot"})
    assert delete_provisioned_throughput(client, "support-bot") is True
    assert delete_provisioned_throughput(client, "support-bot") is False


# --- on-demand deployments -------------------------------------------------------------------------
def test_create_on_demand_deployment_and_wait_until_active(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    _missing(stubber, "get_custom_model_deployment", {"customModelDeploymentIdentifier": "support-bot"})
    stubber.add_response(
        "create_custom_model_deployment",
        {"customModelDeploymentArn": DEPLOY_ARN},
        {"modelDeploymentName": "support-bot", "modelArn": NOVA_V1, "clientRequestToken": ANY},
    )
    stubber.add_response("get_custom_model_deployment", _deployment("Creating", NOVA_V1))
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V1))
    endpoint = ensure_custom_model_deployment(client, "support-bot", NOVA_V1, sleep=sleeps)
    assert (endpoint.arn, endpoint.kind, endpoint.status) == (DEPLOY_ARN, "on-demand-deployment", "Active")


def test_deployment_is_repointed_for_rollback(bedrock: tuple[Any, Stubber], sleeps: SleepRecorder) -> None:
    client, stubber = bedrock
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V2))
    stubber.add_response(
        "update_custom_model_deployment",
        {"customModelDeploymentArn": DEPLOY_ARN},
        {"customModelDeploymentIdentifier": DEPLOY_ARN, "modelArn": NOVA_V1},
    )
    updating = _deployment("Active", NOVA_V2, updateDetails={"modelArn": NOVA_V1, "updateStatus": "Updating"})
    stubber.add_response("get_custom_model_deployment", updating)
    stubber.add_response(
        "get_custom_model_deployment",
        _deployment(
            "Active", NOVA_V1, updateDetails={"modelArn": NOVA_V1, "updateStatus": "UpdateCompleted"}
        ),
    )
    assert ensure_custom_model_deployment(client, "support-bot", NOVA_V1, sleep=sleeps).model_arn == NOVA_V1


def test_failed_deployment_update_raises_with_message(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = bedrock
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V2))
    stubber.add_response("update_custom_model_deployment", {"customModelDeploymentArn": DEPLOY_ARN})
    stubber.add_response(
        "get_custom_model_deployment",
        _deployment(
            "Active",
            NOVA_V2,
            updateDetails={"modelArn": NOVA_V1, "updateStatus": "UpdateFailed"},
            failureMessage="Model was trained before 2025-07-16 and cannot be served on demand",
        ),
    )
    with pytest.raises(PromotionError, match="cannot be served on demand"):
        ensure_custom_model_deployment(client, "support-bot", NOVA_V1, sleep=sleeps)


def test_delete_deployment_is_idempotent(bedrock: tuple[Any, Stubber]) -> None:
    client, stubber = bedrock
    _missing(stubber, "delete_custom_model_deployment", {"customModelDeploymentIdentifier": "support-bot"})
    assert delete_custom_model_deployment(client, "support-bot") is False


# --- dispatch, names -------------------------------------------------------------------------------
def test_serving_off_by_default_makes_no_calls(bedrock: tuple[Any, Stubber]) -> None:
    assert PromotionConfig().serving == "none"
    assert ensure_serving(bedrock[0], PromotionConfig(), "support-bot", MODEL_V1) is None


def test_ensure_serving_uses_the_configured_kind(bedrock: tuple[Any, Stubber], sleeps: SleepRecorder) -> None:
    client, stubber = bedrock
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V1))
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V1))
    endpoint = ensure_serving(
        client, PromotionConfig(serving="on-demand-deployment"), "support-bot", NOVA_V1, sleep=sleeps
    )
    assert endpoint is not None and endpoint.kind == "on-demand-deployment"


@given(st.text(min_size=1, max_size=100).filter(lambda s: re.search(r"[0-9A-Za-z]", s) is not None))
def test_serving_names_fit_bedrocks_pattern(model_name: str) -> None:
    name = serving_name(model_name)
    assert len(name) <= 63
    assert re.fullmatch(r"([0-9a-zA-Z][_-]?)+", name)


def test_serving_name_without_letters_is_refused() -> None:
    with pytest.raises(PromotionError, match="no letters or digits"):
        serving_name("---")


def test_the_providers_server_points_the_named_endpoint_at_the_model(
    bedrock: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    """What promotion and rollback call (``BackendProvider.server``): Bedrock serves; local does not."""
    from tuneline.backends.bedrock import PROVIDER as BEDROCK
    from tuneline.backends.local import PROVIDER as LOCAL
    from tuneline.settings import Settings

    client, stubber = bedrock
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert BEDROCK.server(PromotionConfig(), settings, client) is None
    assert LOCAL.server(PromotionConfig(), settings) is None
    serve = BEDROCK.server(PromotionConfig(serving="on-demand-deployment"), settings, client)
    assert serve is not None
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V1),
                         {"customModelDeploymentIdentifier": "support-bot"})
    stubber.add_response("get_custom_model_deployment", _deployment("Active", NOVA_V1))
    assert serve("support-bot", NOVA_V1) == DEPLOY_ARN
    stubber.assert_no_pending_responses()
