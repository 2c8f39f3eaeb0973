"""Evaluation suites in memory: a suite's config, its records, and a content version.

The version is a hash of the records alone (prompts and references), not of the suite's metrics:
it is part of the generation cache key, and changing which metrics a suite reports must not force
the models to answer again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneline.config import SuiteConfig
from tuneline.errors import DataError
from tuneline.records import ChatRecord, Message, from_nova, from_openai, to_bedrock

__all__ = ["LoadedSuite", "parse_chat_record", "render_prompt"]


def _record_hash(record: ChatRecord) -> str:
    canonical = json.dumps(to_bedrock(record), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class LoadedSuite(BaseModel):
    """A suite ready to evaluate: its config and its records (each final turn is the reference)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: SuiteConfig
    records: tuple[ChatRecord, ...] = Field(min_length=1)

    @property
    def name(self) -> str:
        return self.config.name

    @cached_property
    def version(self) -> str:
        """A 16-hex-digit hash of the records, in order."""
        digest = hashlib.sha256()
        for record in self.records:
            digest.update(_record_hash(record).encode())
        return digest.hexdigest()[:16]

    @cached_property
    def example_ids(self) -> tuple[str, ...]:
        """Stable per-record ids (content hashes), so history can follow one example across runs.

        A record that occurs more than once gets ``-2``, ``-3``... on its later copies.
        """
        seen: dict[str, int] = {}
        ids = []
        for record in self.records:
            base = _record_hash(record)[:12]
            seen[base] = seen.get(base, 0) + 1
            ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
        return tuple(ids)

    @classmethod
    def from_jsonl(cls, config: SuiteConfig, lines: Iterable[str], source: str) -> LoadedSuite:
        """Parse JSONL chat records (Bedrock, OpenAI, Nova or prompt/completion shape).

        Raises ``DataError`` naming the suite, ``source`` and line of the first bad record.
        """
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(parse_chat_record(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                raise DataError(
                    f"suite {config.name!r}: {source} line {number} is not a chat record ({detail}); "
                    "each line must be a JSON object with 'messages' ending in an assistant turn, "
                    "or with 'prompt' and 'completion'"
                ) from exc
        if not records:
            raise DataError(f"suite {config.name!r}: {source} holds no records")
        return cls(config=config, records=tuple(records))


def parse_chat_record(obj: Any) -> ChatRecord:
    """One JSON object in any supported record shape, as a ``ChatRecord``."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a JSON object, got {type(obj).__name__}")
    if "prompt" in obj and "completion" in obj:
        return ChatRecord(
            messages=(
                Message(role="user", content=obj["prompt"]),
                Message(role="assistant", content=obj["completion"]),
            )
        )
    messages = obj.get("messages") or []
    if "schemaVersion" in obj:
        record = from_nova(obj)
    elif messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
        record = from_openai(obj)
    else:
        record = ChatRecord.model_validate(obj)
    if record.messages[-1].role != "assistant":
        raise ValueError("the last message must be the assistant's reference answer")
    return record


def render_prompt(record: ChatRecord) -> str:
    """The prompt as a reviewer reads it: the user's text alone when it is one plain turn."""
    turns = record.prompt_messages
    if record.system is None and len(turns) == 1:
        return turns[0].content
    lines = [f"system: {record.system}"] if record.system is not None else []
    lines += [f"{m.role}: {m.content}" for m in turns]
    return "\n".join(lines)
