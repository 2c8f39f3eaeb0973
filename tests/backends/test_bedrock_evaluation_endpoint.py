"""Evaluating a Bedrock custom model through an endpoint that serves it, with botocore's Stubber.

Bedrock invokes a custom model only through provisioned throughput or a custom model deployment,
never by the custom model's own ARN. These tests drive the generator the Bedrock provider hands to
evaluate (``evaluation_generator``) through the real evaluation runner, against stubs of
``bedrock`` and ``bedrock-runtime`` that check every request against the real service models, and
record the order of the calls across both clients.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st

from tuneline.backends.bedrock.runtime import evaluation_generator
from tuneline.backends.bedrock.serving import evaluation_serving_name
from tuneline.config import GenerationConfig, RunConfig, SuiteConfig, SuiteKind
from tuneline.errors import ConfigError, EvaluationError, TunelineError
from tuneline.evaluation.runner import ModelUnderTest, evaluate_models
from tuneline.evaluation.suites import LoadedSuite
from tuneline.records import ChatRecord, Message

if TYPE_CHECKING:
    from tests.conftest import SleepRecorder

ROLE = "arn:aws:iam::123456789012:role/BedrockTuning"
ACCOUNT = "arn:aws:bedrock:us-west-2:123456789012"
NOVA = "amazon.nova-micro-v1:0:128k"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
NOVA_MODEL = f"{ACCOUNT}:custom-model/{NOVA}/cccccccccccc"
HAIKU_MODEL = f"{ACCOUNT}:custom-model/{HAIKU}/aaaaaaaaaaaa"
DEPLOY_ARN = f"{ACCOUNT}:custom-model-deployment/eeeeeeeeeeee"
PT_ARN = f"{ACCOUNT}:provisioned-model/pppppppppppp"
WHEN = datetime(2025, 8, 1, tzinfo=UTC)
OPT_IN = "evaluation.allow_provisioned_throughput"


@pytest.fixture
def aws(stubbed_aws: Callable[..., tuple[Any, Stubber]]) -> Aws:
    return Aws(stubbed_aws("bedrock"), stubbed_aws("bedrock-runtime"))


class Aws:
    """The two stubbed clients, and every call made on either, in order (botocore's own events)."""

    def __init__(self, bedrock: tuple[Any, Stubber], runtime: tuple[Any, Stubber]) -> None:
        (self.bedrock, self.control), (self.runtime, self.data) = bedrock, runtime
        self.calls: list[str] = []
        for client in (self.bedrock, self.runtime):
            client.meta.events.register("before-parameter-build", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append(f"{model.name} {params['modelId']}" if model.name == "Converse" else model.name)

    def reply(self, model_id: str, text: str = "ok") -> None:
        self.data.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
                "metrics": {"latencyMs": 100},
            },
            {"modelId": model_id, "messages": ANY, "inferenceConfig": ANY},
        )

    def missing(self, operation: str, params: dict[str, str]) -> None:
        self.control.add_client_error(operation, "ResourceNotFoundException", "not found", 404, expected_params=params)


def _config(base_model: str, **evaluation: Any) -> RunConfig:
    return RunConfig(
        name="tickets",
        data={"source": "d.jsonl"},
        tune={"backend": "bedrock", "base_model": base_model, "role_arn": ROLE},
        evaluation=evaluation,
    )


SUITE = LoadedSuite(
    config=SuiteConfig(name="task", kind=SuiteKind.TASK, metrics=["exact_match"]),
    records=(ChatRecord(messages=(Message(role="user", content="2+2?"), Message(role="assistant", content="ok"))),),
)


def _generator(aws: Aws, config: RunConfig, label: str, model_uri: str | None, sleeps: SleepRecorder) -> Any:
    return evaluation_generator(
        config,
        label=label,
        model_uri=model_uri,
        base_model=config.tune.base_model,
        runtime=aws.runtime,
        bedrock=lambda: aws.bedrock,
        sleep=sleeps,
    )


def _evaluate(aws: Aws, config: RunConfig, candidate: str, sleeps: SleepRecorder) -> Any:
    """The runner, as evaluate calls it: candidate first, then the base model."""
    models = {
        "candidate": ModelUnderTest("tickets/job/1", lambda: _generator(aws, config, "candidate", candidate, sleeps)),
        "base": ModelUnderTest(f"base/{config.tune.base_model}", lambda: _generator(aws, config, "base", None, sleeps)),
    }
    return evaluate_models(models, [SUITE], config.evaluation)


def _deployment(status: str, name: str, arn: str = DEPLOY_ARN) -> dict[str, Any]:
    return {"customModelDeploymentArn": arn, "modelDeploymentName": name, "modelArn": NOVA_MODEL,
            "createdAt": WHEN, "status": status}


def _pt(status: str, name: str) -> dict[str, Any]:
    return {"modelUnits": 1, "desiredModelUnits": 1, "provisionedModelName": name, "provisionedModelArn": PT_ARN,
            "modelArn": HAIKU_MODEL, "desiredModelArn": HAIKU_MODEL,
            "foundationModelArn": f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}", "status": status,
            "creationTime": WHEN, "lastModifiedTime": WHEN}


# --- Nova: an on-demand deployment -----------------------------------------------------------------
def test_a_nova_candidate_answers_through_a_deployment_made_for_it_and_deleted_after(
    aws: Aws, sleeps: SleepRecorder
) -> None:
    name = evaluation_serving_name("tickets", NOVA_MODEL)
    aws.control.add_response(
        "list_custom_model_deployments", {"modelDeploymentSummaries": []}, {"modelArnEquals": NOVA_MODEL}
    )
    aws.missing("get_custom_model_deployment", {"customModelDeploymentIdentifier": name})
    aws.control.add_response(
        "create_custom_model_deployment",
        {"customModelDeploymentArn": DEPLOY_ARN},
        {
            "modelDeploymentName": name,
            "modelArn": NOVA_MODEL,
            "description": ANY,
            "clientRequestToken": ANY,
            "tags": [{"key": "tuneline:evaluation", "value": "candidate"}, {"key": "tuneline:model", "value": "tickets"}],
        },
    )
    aws.control.add_response("get_custom_model_deployment", _deployment("Creating", name),
                             {"customModelDeploymentIdentifier": DEPLOY_ARN})
    aws.control.add_response("get_custom_model_deployment", _deployment("Active", name))
    aws.reply(DEPLOY_ARN)
    aws.control.add_response("delete_custom_model_deployment", {}, {"customModelDeploymentIdentifier": name})
    aws.reply(NOVA)  # the base model, on demand by its id

    result = _evaluate(aws, _config(NOVA), NOVA_MODEL, sleeps)

    assert result.generated == {"candidate": 1, "base": 1}
    assert aws.calls == [
        "ListCustomModelDeployments",
        "GetCustomModelDeployment",
        "CreateCustomModelDeployment",
        "GetCustomModelDeployment",
        "GetCustomModelDeployment",
        f"Converse {DEPLOY_ARN}",  # never the custom model's own ARN
        "DeleteCustomModelDeployment",  # before the next model is evaluated
        f"Converse {NOVA}",
    ]
    assert sleeps.calls == [30]  # one bounded poll while it came up


def test_an_existing_deployment_of_the_model_is_used_and_left_in_place(aws: Aws, sleeps: SleepRecorder) -> None:
    """The champion's own serving (promotion's endpoint, named after the model) is not deleted."""
    aws.control.add_response(
        "list_custom_model_deployments",
        {"modelDeploymentSummaries": [
            {"customModelDeploymentArn": f"{ACCOUNT}:custom-model-deployment/ffffffffffff",
             "customModelDeploymentName": "old-failed", "modelArn": NOVA_MODEL, "createdAt": WHEN, "status": "Failed"},
            {"customModelDeploymentArn": DEPLOY_ARN, "customModelDeploymentName": "tickets",
             "modelArn": NOVA_MODEL, "createdAt": WHEN, "status": "Active"},
        ]},
        {"modelArnEquals": NOVA_MODEL},
    )
    aws.control.add_response("get_custom_model_deployment", _deployment("Active", "tickets"),
                             {"customModelDeploymentIdentifier": DEPLOY_ARN})
    aws.reply(DEPLOY_ARN)
    generator = _generator(aws, _config(NOVA), "champion", NOVA_MODEL, sleeps)
    assert [g.text for g in generator.generate(SUITE.records, GenerationConfig())] == ["ok"]
    generator.close()  # no delete is queued: a delete would fail the test
    assert aws.calls == ["ListCustomModelDeployments", "GetCustomModelDeployment", f"Converse {DEPLOY_ARN}"]


def test_a_deployment_an_interrupted_evaluation_left_is_used_then_deleted(aws: Aws, sleeps: SleepRecorder) -> None:
    name = evaluation_serving_name("tickets", NOVA_MODEL)
    aws.control.add_response(
        "list_custom_model_deployments",
        {"modelDeploymentSummaries": [{"customModelDeploymentArn": DEPLOY_ARN, "customModelDeploymentName": name,
                                       "modelArn": NOVA_MODEL, "createdAt": WHEN, "status": "Active"}]},
    )
    aws.control.add_response("get_custom_model_deployment", _deployment("Active", name),
                             {"customModelDeploymentIdentifier": name})
    aws.control.add_response("get_custom_model_deployment", _deployment("Active", name))
    aws.reply(DEPLOY_ARN)
    aws.control.add_response("delete_custom_model_deployment", {}, {"customModelDeploymentIdentifier": name})
    generator = _generator(aws, _config(NOVA), "candidate", NOVA_MODEL, sleeps)
    generator.generate(SUITE.records, GenerationConfig())
    generator.close()
    generator.close()  # closing twice deletes once
    assert "CreateCustomModelDeployment" not in aws.calls
    assert aws.calls[-1] == "DeleteCustomModelDeployment"


def test_a_nova_model_bedrock_will_not_deploy_says_why(aws: Aws, sleeps: SleepRecorder) -> None:
    name = evaluation_serving_name("tickets", NOVA_MODEL)
    aws.control.add_response("list_custom_model_deployments", {"modelDeploymentSummaries": []})
    aws.missing("get_custom_model_deployment", {"customModelDeploymentIdentifier": name})
    aws.control.add_client_error("create_custom_model_deployment", "ValidationException",
                                 "The model does not support on-demand inference", 400)
    aws.missing("delete_custom_model_deployment", {"customModelDeploymentIdentifier": name})
    with pytest.raises(EvaluationError, match=r"does not support on-demand inference.*on or after 2025-07-16"):
        _generator(aws, _config(NOVA), "candidate", NOVA_MODEL, sleeps)
    assert not any(call.startswith("Converse") for call in aws.calls)


# --- provisioned throughput only -------------------------------------------------------------------
def test_a_pt_only_candidate_is_refused_before_anything_is_bought_or_invoked(aws: Aws, sleeps: SleepRecorder) -> None:
    aws.control.add_response("list_provisioned_model_throughputs", {"provisionedModelSummaries": []},
                             {"modelArnEquals": HAIKU_MODEL})
    with pytest.raises(ConfigError) as refused:
        _evaluate(aws, _config(HAIKU), HAIKU_MODEL, sleeps)
    message = str(refused.value)
    assert HAIKU_MODEL in message and HAIKU in message
    assert "billed by the hour" in message
    assert f"{OPT_IN}: true" in message
    assert aws.calls == ["ListProvisionedModelThroughputs"]  # no create, no Converse at all


def test_with_the_opt_in_a_pt_is_bought_used_and_deleted_even_when_generation_fails(
    aws: Aws, sleeps: SleepRecorder
) -> None:
    name = evaluation_serving_name("tickets", HAIKU_MODEL)
    aws.control.add_response("list_provisioned_model_throughputs", {"provisionedModelSummaries": []})
    aws.missing("get_provisioned_model_throughput", {"provisionedModelId": name})
    aws.control.add_response(
        "create_provisioned_model_throughput",
        {"provisionedModelArn": PT_ARN},
        # exactly these: no commitmentDuration, so no one- or six-month commitment is bought
        {"provisionedModelName": name, "modelId": HAIKU_MODEL, "modelUnits": 1, "clientRequestToken": ANY,
         "tags": ANY},
    )
    aws.control.add_response("get_provisioned_model_throughput", _pt("Creating", name), {"provisionedModelId": PT_ARN})
    aws.control.add_response("get_provisioned_model_throughput", _pt("InService", name))
    aws.data.add_client_error("converse", "ValidationException", "Malformed input request", 400)
    aws.control.add_response("delete_provisioned_model_throughput", {}, {"provisionedModelId": name})

    with pytest.raises(TunelineError, match="Malformed input request"):
        _evaluate(aws, _config(HAIKU, allow_provisioned_throughput=True), HAIKU_MODEL, sleeps)
    assert aws.calls[-2:] == [f"Converse {PT_ARN}", "DeleteProvisionedModelThroughput"]


def test_a_pt_that_never_comes_up_is_deleted_too(aws: Aws, sleeps: SleepRecorder) -> None:
    name = evaluation_serving_name("tickets", HAIKU_MODEL)
    aws.control.add_response("list_provisioned_model_throughputs", {"provisionedModelSummaries": []})
    aws.missing("get_provisioned_model_throughput", {"provisionedModelId": name})
    aws.control.add_response("create_provisioned_model_throughput", {"provisionedModelArn": PT_ARN})
    aws.control.add_response("get_provisioned_model_throughput", _pt("Failed", name) | {"failureMessage": "No capacity"})
    aws.control.add_response("delete_provisioned_model_throughput", {}, {"provisionedModelId": name})
    with pytest.raises(EvaluationError, match="No capacity"):
        _generator(aws, _config(HAIKU, allow_provisioned_throughput=True), "candidate", HAIKU_MODEL, sleeps)
    assert aws.calls[-1] == "DeleteProvisionedModelThroughput"


def test_a_delete_that_fails_names_the_pt_to_delete_by_hand(aws: Aws, sleeps: SleepRecorder) -> None:
    name = evaluation_serving_name("tickets", HAIKU_MODEL)
    aws.control.add_response("list_provisioned_model_throughputs", {"provisionedModelSummaries": []})
    aws.missing("get_provisioned_model_throughput", {"provisionedModelId": name})
    aws.control.add_response("create_provisioned_model_throughput", {"provisionedModelArn": PT_ARN})
    aws.control.add_response("get_provisioned_model_throughput", _pt("InService", name))
    aws.reply(PT_ARN)
    aws.control.add_client_error("delete_provisioned_model_throughput", "AccessDeniedException", "not allowed", 403)
    generator = _generator(aws, _config(HAIKU, allow_provisioned_throughput=True), "candidate", HAIKU_MODEL, sleeps)
    generator.generate(SUITE.records, GenerationConfig())
    with pytest.raises(EvaluationError) as failed:
        generator.close()
    assert "billed by the hour" in str(failed.value)
    assert f"aws bedrock delete-provisioned-model-throughput --provisioned-model-id {name}" in str(failed.value)


def test_a_pt_that_already_serves_the_model_is_used_without_the_opt_in(aws: Aws, sleeps: SleepRecorder) -> None:
    """A champion promoted with provisioned-throughput serving: nothing new is bought or deleted."""
    aws.control.add_response(
        "list_provisioned_model_throughputs",
        {"provisionedModelSummaries": [_pt("InService", "tickets")]},
    )
    aws.control.add_response("get_provisioned_model_throughput", _pt("InService", "tickets"),
                             {"provisionedModelId": PT_ARN})
    aws.reply(PT_ARN)
    generator = _generator(aws, _config(HAIKU), "champion", HAIKU_MODEL, sleeps)
    generator.generate(SUITE.records, GenerationConfig())
    generator.close()
    assert aws.calls == ["ListProvisionedModelThroughputs", "GetProvisionedModelThroughput", f"Converse {PT_ARN}"]


# --- what needs no endpoint ------------------------------------------------------------------------
@pytest.mark.parametrize("model_uri", [None, PT_ARN, DEPLOY_ARN])
def test_base_models_and_endpoints_are_invoked_as_they_are(
    aws: Aws, sleeps: SleepRecorder, model_uri: str | None
) -> None:
    def no_control_plane() -> Any:
        raise AssertionError("no bedrock control-plane call is needed")

    aws.reply(model_uri or HAIKU)
    generator = evaluation_generator(_config(HAIKU), label="base", model_uri=model_uri, base_model=HAIKU,
                                     runtime=aws.runtime, bedrock=no_control_plane, sleep=sleeps)
    generator.generate(SUITE.records, GenerationConfig())
    generator.close()
    assert aws.calls == [f"Converse {model_uri or HAIKU}"]


@given(st.text(min_size=1, max_size=100).filter(lambda s: re.search(r"[0-9A-Za-z]", s) is not None))
def test_evaluation_endpoint_names_fit_bedrocks_pattern(model_name: str) -> None:
    name = evaluation_serving_name(model_name, NOVA_MODEL)
    assert len(name) <= 63
    assert re.fullmatch(r"([0-9a-zA-Z][_-]?)+", name)
    assert name != evaluation_serving_name(model_name, HAIKU_MODEL)



def test_each_evaluation_creates_its_endpoint_with_a_request_token_of_its_own(aws: Aws, sleeps: SleepRecorder) -> None:
    """A later evaluation of the same model, after the first deleted its deployment, must not repeat
    the first's idempotency token: Bedrock would answer it with the deleted deployment."""
    from tuneline.backends.bedrock.serving import serve_for_evaluation

    name = evaluation_serving_name("tickets", NOVA_MODEL)
    tokens: list[str] = []
    aws.bedrock.meta.events.register(
        "provide-client-params.bedrock.CreateCustomModelDeployment",
        lambda params, **_: tokens.append(params["clientRequestToken"]),
    )
    for _ in range(2):
        aws.control.add_response(
            "list_custom_model_deployments", {"modelDeploymentSummaries": []}, {"modelArnEquals": NOVA_MODEL}
        )
        aws.missing("get_custom_model_deployment", {"customModelDeploymentIdentifier": name})
        aws.control.add_response("create_custom_model_deployment", {"customModelDeploymentArn": DEPLOY_ARN})
        aws.control.add_response("get_custom_model_deployment", _deployment("Active", name))
        aws.control.add_response("delete_custom_model_deployment", {}, {"customModelDeploymentIdentifier": name})
        with serve_for_evaluation(aws.bedrock, NOVA_MODEL, "on-demand-deployment", model_name="tickets",
                                  label="candidate", base_model=NOVA, sleep=sleeps) as endpoint:
            assert endpoint.arn == DEPLOY_ARN
    assert len(tokens) == 2 and tokens[0] != tokens[1]
