"""Bedrock models as text generators for evaluation, and an LLM-as-judge with a verdict cache.

Both go through the ``Converse`` API, which takes the same chat shape for every Bedrock model, so a
base model, a provisioned custom model and an on-demand deployment are all addressed by one id or
ARN. A custom model's own ARN is not one of them: Bedrock invokes a custom model only through
provisioned throughput or a custom model deployment, so ``evaluation_generator`` puts one in front
of it for the evaluation (``serving.serve_for_evaluation``). Calls run on a bounded thread pool;
throttling slows the whole pool down (see ``BedrockCaller``) and only transient errors are retried.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneline.backends.base import Generation
from tuneline.backends.bedrock.api import BedrockCaller, Sleep, make_bedrock_client
from tuneline.backends.bedrock.models import BEDROCK_MODELS
from tuneline.backends.bedrock.serving import ServingKind, is_custom_model_arn, serve_for_evaluation
from tuneline.config import GenerationConfig, JudgeConfig, RunConfig
from tuneline.errors import EvaluationError
from tuneline.records import ChatRecord, Message
from tuneline.settings import Settings

__all__ = [
    "BedrockGenerator",
    "BedrockJudge",
    "JudgeItem",
    "JudgeVerdict",
    "evaluation_generator",
]


class BedrockGenerator:
    """A ``TextGenerator`` over Bedrock Runtime ``Converse`` (base, custom or deployed models)."""

    def __init__(
        self,
        model_id: str,
        *,
        settings: Settings | None = None,
        client: Any | None = None,
        label: str | None = None,
        max_workers: int = 4,
        sleep: Sleep = time.sleep,
        max_attempts: int = 6,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if client is None:
            if settings is None:
                raise ValueError("BedrockGenerator needs a bedrock-runtime client or settings to make one")
            client = make_bedrock_client(settings, "bedrock-runtime")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.model_id = model_id
        self.label = label or model_id
        self.max_workers = max_workers
        self._call = BedrockCaller(client, sleep=sleep, max_attempts=max_attempts)
        self.on_close = on_close

    def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
        """Answer each record's ``prompt_messages``; results in input order."""
        return self.converse_many([(p.system, p.prompt_messages) for p in prompts], config)

    def converse_many(
        self, requests: Sequence[tuple[str | None, Sequence[Message]]], config: GenerationConfig
    ) -> list[Generation]:
        """One ``Converse`` call per (system, messages) pair, at most ``max_workers`` at a time."""
        if not requests:
            return []
        if self.max_workers == 1 or len(requests) == 1:
            return [self._converse(system, messages, config) for system, messages in requests]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(requests))) as pool:
            futures: list[Future[Generation]] = [
                pool.submit(self._converse, system, messages, config) for system, messages in requests
            ]
            try:
                return [f.result() for f in futures]
            except BaseException:
                # A hard error ends the batch: don't spend money on calls whose results are discarded.
                for f in futures:
                    f.cancel()
                raise

    def _converse(
        self, system: str | None, messages: Sequence[Message], config: GenerationConfig
    ) -> Generation:
        inference: dict[str, Any] = {"maxTokens": config.max_new_tokens, "temperature": config.temperature}
        if config.stop:
            inference["stopSequences"] = list(config.stop)
        params: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in messages],
            "inferenceConfig": inference,
        }
        if system:
            params["system"] = [{"text": system}]
        started = time.perf_counter()
        response = self._call("converse", subject=f"model {self.model_id}", **params)
        elapsed = time.perf_counter() - started
        content = response["output"].get("message", {}).get("content", [])
        text = "".join(block.get("text", "") for block in content)
        # The service's own latency excludes our back-off sleeps, so throttling does not skew p95.
        latency_ms = (response.get("metrics") or {}).get("latencyMs")
        return Generation(
            text=text,
            latency_s=latency_ms / 1000 if latency_ms is not None else elapsed,
            output_tokens=(response.get("usage") or {}).get("outputTokens"),
        )

    def close(self) -> None:
        """Run ``on_close`` once (it deletes an endpoint made for the evaluation); the model itself
        lives in Bedrock and the pool lives per call."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


def evaluation_generator(
    config: RunConfig,
    *,
    label: str,
    model_uri: str | None,
    base_model: str,
    runtime: Any,
    bedrock: Callable[[], Any],
    sleep: Sleep = time.sleep,
    poll_seconds: float = 30.0,
) -> BedrockGenerator:
    """What evaluate asks the Bedrock provider for: the base model, or ``model_uri``, answering.

    A base model (and anything else Bedrock invokes as it is) is called by its id. A custom model
    ARN is called through an endpoint that serves it: ``serve_for_evaluation`` finds or makes one
    (``bedrock()`` gives the control-plane client) before the first ``Converse`` call, and
    ``close()`` deletes what it made. ``runtime`` is the ``bedrock-runtime`` client.
    """
    model_id = model_uri or base_model
    if not is_custom_model_arn(model_id):
        return BedrockGenerator(model_id, client=runtime, label=label)
    with ExitStack() as stack:
        endpoint = stack.enter_context(
            serve_for_evaluation(
                bedrock(),
                model_id,
                _serving_of(config, base_model),
                model_name=config.name,
                label=label,
                base_model=base_model,
                allow_provisioned_throughput=config.evaluation.allow_provisioned_throughput,
                sleep=sleep,
                poll_seconds=poll_seconds,
            )
        )
        generator = BedrockGenerator(endpoint.arn, client=runtime, label=label, sleep=sleep)
        generator.on_close = stack.pop_all().close  # from here on, closing the generator releases it
    return generator


def _serving_of(config: RunConfig, base_model: str) -> ServingKind:
    """How Bedrock serves custom models of ``base_model``: the config's own limits for it, else the
    model table; provisioned throughput (the table's default) when neither knows the model."""
    limits = getattr(config.tune, "model_limits", None)
    spec = limits if limits is not None and limits.model_id == base_model else BEDROCK_MODELS.get(base_model)
    return spec.serving if spec is not None else "provisioned-throughput"


class JudgeItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    answer: str
    reference: str | None = Field(
        default=None, description="The expected answer, shown to the judge when given."
    )


class JudgeVerdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0, le=1, description="raw_score normalised to 0..1 over the rubric's scale.")
    raw_score: int
    reason: str
    cached: bool = False


_JUDGE_SYSTEM = (
    "You are a strict, consistent grader. Grade the answer against the rubric only. Reply with a "
    'single JSON object and nothing else: {{"score": <integer from {low} to {high}>, "reason": '
    '"<one short sentence>"}}.'
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class BedrockJudge:
    """Scores answers against a rubric with a Bedrock model; verdicts are cached on disk.

    The cache key is a hash of (judge model, rubric, score scale, prompt, answer, reference), so a
    re-run of an unchanged evaluation makes no Bedrock calls at all, and changing any of them asks
    the judge again. The cache is a SQLite file: safe for several processes, one row per verdict.
    """

    def __init__(
        self,
        config: JudgeConfig,
        generator: BedrockGenerator,
        cache_path: Path | None = None,
    ) -> None:
        self.config = config
        self.generator = generator
        self._cache = _VerdictCache(cache_path) if config.cache and cache_path is not None else None

    @classmethod
    def from_settings(cls, config: JudgeConfig, settings: Settings) -> BedrockJudge:
        generator = BedrockGenerator(
            config.model_id,
            settings=settings,
            label=f"judge:{config.model_id}",
            max_workers=config.max_concurrency,
        )
        return cls(config, generator, settings.home / "cache" / "judge.sqlite")

    def key(self, item: JudgeItem) -> str:
        canonical = json.dumps(
            [
                self.config.model_id,
                self.config.rubric,
                self.config.min_score,
                self.config.max_score,
                item.prompt,
                item.answer,
                item.reference,
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def score(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        keys = [self.key(item) for item in items]
        known = self._cache.get_many(keys) if self._cache else {}
        missing = [i for i, k in enumerate(keys) if k not in known]
        system = _JUDGE_SYSTEM.format(low=self.config.min_score, high=self.config.max_score)
        generations = self.generator.converse_many(
            [(system, (Message(role="user", content=self._question(items[i])),)) for i in missing],
            GenerationConfig(max_new_tokens=256, temperature=0.0),
        )
        fresh: dict[str, tuple[int, str]] = {}
        for i, generation in zip(missing, generations, strict=True):
            fresh[keys[i]] = self._parse(i, generation.text)
        if self._cache and fresh:
            self._cache.put_many(fresh, judge=self.config.model_id)
        span = self.config.max_score - self.config.min_score
        verdicts = []
        for key in keys:
            raw, reason = known.get(key) or fresh[key]
            verdicts.append(
                JudgeVerdict(
                    score=(raw - self.config.min_score) / span,
                    raw_score=raw,
                    reason=reason,
                    cached=key in known,
                )
            )
        return verdicts

    def _question(self, item: JudgeItem) -> str:
        parts = [f"Rubric:\n{self.config.rubric}", f"Prompt:\n{item.prompt}"]
        if item.reference is not None:
            parts.append(f"Reference answer:\n{item.reference}")
        parts.append(f"Answer to grade:\n{item.answer}")
        return "\n\n".join(parts)

    def _parse(self, index: int, text: str) -> tuple[int, str]:
        match = _JSON_OBJECT.search(text)
        try:
            verdict = json.loads(match.group(0)) if match else None
            raw = verdict["score"] if isinstance(verdict, dict) else None
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ValueError("no integer score")
            if not self.config.min_score <= raw <= self.config.max_score:
                raise ValueError(f"score {raw} outside {self.config.min_score}..{self.config.max_score}")
        except (ValueError, KeyError, TypeError) as exc:
            raise EvaluationError(
                f"judge {self.config.model_id} gave no usable verdict for item {index} ({exc}); "
                f"it answered: {text[:300]!r}"
            ) from exc
        return raw, str(verdict.get("reason", ""))


class _VerdictCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS verdicts ("
                " key TEXT PRIMARY KEY, raw_score INTEGER NOT NULL, reason TEXT NOT NULL,"
                " judge TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _connect(self) -> _Connection:
        return _Connection(self.path)

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        with self._connect() as conn:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, raw_score, reason FROM verdicts WHERE key IN ({marks})", chunk
                )
                found.update({key: (raw, reason) for key, raw, reason in rows})
        return found

    def put_many(self, verdicts: dict[str, tuple[int, str]], judge: str) -> None:
        now = time.time()
        with self._connect() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
                [(key, raw, reason, judge, now) for key, (raw, reason) in verdicts.items()],
            )


class _Connection:
    """A SQLite connection that commits and closes on exit (``sqlite3``'s own only commits)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, timeout=30)

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, exc_type: type | None, *_: object) -> None:
        with closing(self._conn):
            if exc_type is None:
                self._conn.commit()
            else:
                self._conn.rollback()
