"""Bedrock Runtime generation and the LLM judge, with botocore's Stubber (no AWS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import Stubber

from tuneline.backends.bedrock.runtime import BedrockGenerator, BedrockJudge, JudgeItem
from tuneline.config import EvaluationConfig, GenerationConfig, JudgeConfig
from tuneline.errors import BackendError, EvaluationError, ServiceUnavailableError
from tuneline.records import ChatRecord, Message

if TYPE_CHECKING:
    from tests.conftest import SleepRecorder

MODEL = "amazon.nova-micro-v1:0"
JUDGE = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def runtime(stubbed_aws: Callable[..., tuple[Any, Stubber]]) -> tuple[Any, Stubber]:
    return stubbed_aws("bedrock-runtime")


def _record(question: str, system: str | None = None) -> ChatRecord:
    return ChatRecord(
        system=system,
        messages=(Message(role="user", content=question), Message(role="assistant", content="reference")),
    )


def _reply(text: str, latency_ms: int = 120, output_tokens: int = 7) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": output_tokens, "totalTokens": 10 + output_tokens},
        "metrics": {"latencyMs": latency_ms},
    }


def _request(question: str, system: str | None = None, **inference: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "modelId": MODEL,
        "messages": [{"role": "user", "content": [{"text": question}]}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.0, **inference},
    }
    if system:
        params["system"] = [{"text": system}]
    return params


CONFIG = GenerationConfig(max_new_tokens=64)


def test_converse_sends_system_messages_and_settings_and_returns_text(runtime: tuple[Any, Stubber]) -> None:
    client, stubber = runtime
    stubber.add_response(
        "converse", _reply("Paris", latency_ms=250), _request("Capital of France?", "Be brief.")
    )
    stubber.add_response("converse", _reply("4"), _request("2+2?", stopSequences=["\n"]))
    generator = BedrockGenerator(MODEL, client=client, max_workers=1, label="base")
    first = generator.generate([_record("Capital of France?", "Be brief.")], CONFIG)
    second = generator.generate([_record("2+2?")], CONFIG.model_copy(update={"stop": ["\n"]}))
    assert (first[0].text, first[0].latency_s, first[0].output_tokens) == ("Paris", 0.25, 7)
    assert second[0].text == "4"
    assert generator.label == "base"


def test_multi_turn_prompt_sends_every_turn_but_the_answer(runtime: tuple[Any, Stubber]) -> None:
    client, stubber = runtime
    record = ChatRecord(
        messages=(
            Message(role="user", content="hi"),
            Message(role="assistant", content="hello"),
            Message(role="user", content="and now?"),
            Message(role="assistant", content="expected"),
        )
    )
    expected = _request("hi")
    expected["messages"] = [
        {"role": "user", "content": [{"text": "hi"}]},
        {"role": "assistant", "content": [{"text": "hello"}]},
        {"role": "user", "content": [{"text": "and now?"}]},
    ]
    stubber.add_response("converse", _reply("ok"), expected)
    assert BedrockGenerator(MODEL, client=client).generate([record], CONFIG)[0].text == "ok"


def test_throttling_then_success_backs_off_and_slows_later_calls(
    runtime: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = runtime
    stubber.add_client_error("converse", "ThrottlingException", "Too many requests, please wait", 429)
    stubber.add_client_error("converse", "ThrottlingException", "Too many requests, please wait", 429)
    stubber.add_response("converse", _reply("first"), _request("q1"))
    stubber.add_response("converse", _reply("second"), _request("q2"))
    generator = BedrockGenerator(MODEL, client=client, max_workers=1, sleep=sleeps)
    out = generator.generate([_record("q1"), _record("q2")], CONFIG)
    assert [g.text for g in out] == ["first", "second"]
    # two retry back-offs for q1, then q2 first waits the pace left by the throttling
    assert len(sleeps.calls) == 3
    assert generator._call.pace == 0.5  # halved once per success after doubling to 2.0: 2 -> 1 -> 0.5


def test_transient_server_error_is_retried(runtime: tuple[Any, Stubber], sleeps: SleepRecorder) -> None:
    client, stubber = runtime
    stubber.add_client_error("converse", "ServiceUnavailableException", "try again", 503)
    stubber.add_response("converse", _reply("fine"), _request("q"))
    assert (
        BedrockGenerator(MODEL, client=client, sleep=sleeps).generate([_record("q")], CONFIG)[0].text
        == "fine"
    )
    assert len(sleeps.calls) == 1


def test_hard_error_surfaces_model_and_message_without_retry(
    runtime: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = runtime
    stubber.add_client_error(
        "converse", "ValidationException", "The provided model identifier is invalid.", 400
    )
    generator = BedrockGenerator(MODEL, client=client, sleep=sleeps)
    with pytest.raises(BackendError) as err:
        generator.generate([_record("q")], CONFIG)
    assert not isinstance(err.value, ServiceUnavailableError)
    assert MODEL in str(err.value)
    assert "The provided model identifier is invalid." in str(err.value)
    assert "ValidationException" in str(err.value)
    assert sleeps.calls == []


def test_persistent_throttling_gives_up_with_service_unavailable(
    runtime: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = runtime
    for _ in range(3):
        stubber.add_client_error("converse", "ThrottlingException", "slow down", 429)
    generator = BedrockGenerator(MODEL, client=client, sleep=sleeps, max_attempts=3)
    with pytest.raises(ServiceUnavailableError, match="gave up after 3 attempts.*slow down"):
        generator.generate([_record("q")], CONFIG)


class _EchoClient:
    """A stand-in runtime client that echoes the question and records peak concurrency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0

    def converse(self, **params: Any) -> dict[str, Any]:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(0.02)
        with self._lock:
            self.in_flight -= 1
        return _reply("echo " + params["messages"][-1]["content"][0]["text"])


def test_pool_is_bounded_and_keeps_input_order() -> None:
    client = _EchoClient()
    generator = BedrockGenerator(MODEL, client=client, max_workers=3)
    out = generator.generate([_record(f"q{i}") for i in range(12)], CONFIG)
    assert [g.text for g in out] == [f"echo q{i}" for i in range(12)]
    assert 1 < client.peak <= 3


# --- judge ---------------------------------------------------------------------------------------
def _judge_config(**overrides: Any) -> JudgeConfig:
    return JudgeConfig(model_id=JUDGE, rubric="Correct and concise.", **overrides)


def _judge(client: Any, cache: Path | None, **overrides: Any) -> BedrockJudge:
    config = _judge_config(**overrides)
    return BedrockJudge(config, BedrockGenerator(JUDGE, client=client, max_workers=1), cache)


def test_judge_is_off_by_default() -> None:
    assert EvaluationConfig().judge is None


def test_judge_scores_and_a_rerun_hits_the_cache_without_calls(
    runtime: tuple[Any, Stubber], tmp_path: Path
) -> None:
    client, stubber = runtime
    cache = tmp_path / "cache" / "judge.sqlite"
    items = [
        JudgeItem(prompt="2+2?", answer="4", reference="4"),
        JudgeItem(prompt="Capital of France?", answer="Lyon"),
    ]
    stubber.add_response("converse", _reply('{"score": 5, "reason": "correct"}'))
    stubber.add_response("converse", _reply('Sure. {"score": 1, "reason": "wrong city"}'))
    first = _judge(client, cache).score(items)
    assert [(v.score, v.raw_score, v.reason, v.cached) for v in first] == [
        (1.0, 5, "correct", False),
        (0.0, 1, "wrong city", False),
    ]
    # A new judge (a new process) with the same cache: the Stubber has nothing queued, so any call fails.
    again = _judge(client, cache).score(items)
    assert [(v.score, v.reason, v.cached) for v in again] == [
        (1.0, "correct", True),
        (0.0, "wrong city", True),
    ]


def test_judge_asks_again_when_the_rubric_changes(runtime: tuple[Any, Stubber], tmp_path: Path) -> None:
    client, stubber = runtime
    cache = tmp_path / "judge.sqlite"
    item = JudgeItem(prompt="p", answer="a")
    stubber.add_response("converse", _reply('{"score": 3, "reason": "ok"}'))
    stubber.add_response("converse", _reply('{"score": 4, "reason": "better under the new rubric"}'))
    _judge(client, cache).score([item])
    verdict = BedrockJudge(
        JudgeConfig(model_id=JUDGE, rubric="Friendly tone."), BedrockGenerator(JUDGE, client=client), cache
    ).score([item])[0]
    assert (verdict.raw_score, verdict.cached) == (4, False)
    assert verdict.score == pytest.approx(0.75)


def test_judge_prompt_carries_rubric_reference_and_answer(runtime: tuple[Any, Stubber]) -> None:
    client, stubber = runtime
    expected = {
        "modelId": JUDGE,
        "system": [
            {
                "text": "You are a strict, consistent grader. Grade the answer against the rubric only. Reply "
                'with a single JSON object and nothing else: {"score": <integer from 1 to 5>, "reason": '
                '"<one short sentence>"}.'
            }
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "text": "Rubric:\nCorrect and concise.\n\nPrompt:\nq\n\nReference answer:\nr\n\nAnswer to grade:\na"
                    }
                ],
            }
        ],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.0},
    }
    stubber.add_response("converse", _reply('{"score": 2, "reason": "meh"}'), expected)
    assert _judge(client, None).score([JudgeItem(prompt="q", answer="a", reference="r")])[0].raw_score == 2


@pytest.mark.parametrize(
    "reply",
    ["I think it is fine.", '{"score": 9, "reason": "x"}', '{"score": "high"}', '{"reason": "no score"}'],
    ids=["no-json", "out-of-scale", "not-a-number", "missing-score"],
)
def test_unusable_verdict_is_a_clear_error_and_not_cached(
    runtime: tuple[Any, Stubber], tmp_path: Path, reply: str
) -> None:
    client, stubber = runtime
    cache = tmp_path / "judge.sqlite"
    stubber.add_response("converse", _reply(reply))
    with pytest.raises(EvaluationError, match=f"judge {JUDGE} gave no usable verdict for item 0"):
        _judge(client, cache).score([JudgeItem(prompt="p", answer="a")])
    stubber.add_response("converse", _reply('{"score": 3, "reason": "ok"}'))
    assert _judge(client, cache).score([JudgeItem(prompt="p", answer="a")])[0].cached is False
