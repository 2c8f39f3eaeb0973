"""Evaluation suites in memory: a suite's config, its records, and a content version.

The version is a hash of the records alone (prompts and references), not of the suite's metrics:
it is part of the generation cache key, and changing which metrics a suite reports must not force
the models to answer again.

A suite read from a file goes through the run's PII policy (``data.pii``, the one prepare applies
to training data, with the same detector, ``tuneline.data.pii``) before anything sees its records:
each kind the policy redacts becomes its ``[KIND]`` placeholder in prompts and references, and a
record holding a kind the policy rejects is dropped and counted (:class:`SuitePii`). The prepare
stage's test split is not screened again: prepare already did.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneline.config import PiiAction, PiiPolicy, SuiteConfig
from tuneline.data.pii import scan_and_redact
from tuneline.errors import DataError
from tuneline.records import (
    ChatRecord,
    Message,
    from_nova,
    from_openai,
    record_texts,
    replace_texts,
    to_bedrock,
)

__all__ = ["LoadedSuite", "SuitePii", "parse_chat_record", "render_prompt", "screen_record"]


def _record_hash(record: ChatRecord) -> str:
    canonical = json.dumps(to_bedrock(record), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class SuitePii(BaseModel):
    """What the run's PII policy did to one suite's records before it was evaluated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    screened: bool = Field(
        description="True: screened when the suite was loaded; False: the prepare stage's test split, "
        "which prepare redacted with the same policy (not screened twice)."
    )
    redacted: int = Field(default=0, description="Records kept with at least one span replaced by [KIND].")
    rejected: int = Field(default=0, description="Records dropped: they held a kind the policy rejects.")
    rejected_lines: tuple[int, ...] = Field(default=(), description="Where the dropped records were in the source.")
    rejected_kinds: dict[str, int] = Field(default_factory=dict, description="Rejected kind -> records dropped for it.")
    found: dict[str, int] = Field(default_factory=dict, description="Kind -> spans found (allowed kinds included).")


class LoadedSuite(BaseModel):
    """A suite ready to evaluate: its config and its records (each final turn is the reference)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: SuiteConfig
    records: tuple[ChatRecord, ...] = Field(min_length=1)
    pii: SuitePii | None = Field(default=None, description="None: built in code, not screened by a loader.")

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
    def from_jsonl(
        cls, config: SuiteConfig, lines: Iterable[str], source: str, pii: PiiPolicy | None = None
    ) -> LoadedSuite:
        """Parse JSONL chat records (Bedrock, OpenAI, Nova or prompt/completion shape) and screen
        them with the PII policy ``pii`` (the default policy when unset): see :func:`screen_record`.

        Raises ``DataError`` naming the suite, ``source`` and line of the first bad record, or
        when the policy rejects every record.
        """
        policy = pii if pii is not None else PiiPolicy()
        records: list[ChatRecord] = []
        redacted, rejected_lines = 0, []
        found: Counter[str] = Counter()
        rejected_kinds: Counter[str] = Counter()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = parse_chat_record(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                raise DataError(
                    f"suite {config.name!r}: {source} line {number} is not a chat record ({detail}); "
                    "each line must be a JSON object with 'messages' ending in an assistant turn, "
                    "or with 'prompt' and 'completion'"
                ) from exc
            screened, counts = screen_record(record, policy)
            found.update(counts)
            rejecting = sorted(kind for kind in counts if getattr(policy, kind) is PiiAction.REJECT)
            if rejecting:
                rejected_lines.append(number)
                rejected_kinds.update(rejecting)
                continue
            redacted += screened is not record
            records.append(screened)
        if not records:
            if rejected_lines:
                kinds = ", ".join(k.replace("_", " ") for k in sorted(rejected_kinds))
                raise DataError(
                    f"suite {config.name!r}: every record of {source} holds something the PII policy rejects "
                    f"({kinds}): remove it from the suite, or set data.pii.<kind> to \"redact\""
                )
            raise DataError(f"suite {config.name!r}: {source} holds no records")
        screening = SuitePii(
            screened=True,
            redacted=redacted,
            rejected=len(rejected_lines),
            rejected_lines=tuple(rejected_lines),
            rejected_kinds=dict(sorted(rejected_kinds.items())),
            found=dict(sorted(found.items())),
        )
        return cls(config=config, records=tuple(records), pii=screening)


def screen_record(record: ChatRecord, policy: PiiPolicy) -> tuple[ChatRecord, dict[str, int]]:
    """``record`` with every span ``policy`` does not allow replaced by ``[KIND]`` (the record
    itself when nothing changed), and the spans found per kind, allowed ones included.

    Its system prompt and every text prepare screens (``records.record_texts``: turns, reasoning,
    tool-call arguments, metadata) go through ``tuneline.data.pii.scan_and_redact``, as a training
    record's do. The caller rejects the record when a count names a kind the policy rejects.
    """
    counts: Counter[str] = Counter()
    system = None
    if record.system:
        text, found = scan_and_redact(record.system, policy)
        counts.update(found)
        system = text if text != record.system else None
    replacements = {}
    for position, field in enumerate(record_texts(record)):
        text, found = scan_and_redact(field.text, policy)
        counts.update(found)
        if text != field.text:
            replacements[position] = text
    if system is None and not replacements:
        return record, dict(counts)
    redacted = replace_texts(record, system, replacements)
    assert isinstance(redacted, ChatRecord)
    return redacted, dict(counts)


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
