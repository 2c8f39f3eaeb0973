"""Chat records: the one in-memory shape of a training example, and its on-disk formats.

Tuneline's canonical record is the Bedrock/Anthropic chat shape (an optional system prompt and
strictly alternating user/assistant turns). Readers convert every supported input format into it,
and writers convert it into whatever the tuning target needs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatRecord",
    "Message",
    "RecordFormat",
    "from_nova",
    "from_openai",
    "to_bedrock",
    "to_nova",
    "to_openai",
]

NOVA_SCHEMA_VERSION = "bedrock-conversation-2024"


class RecordFormat(StrEnum):
    """On-disk record formats Tuneline reads and writes."""

    BEDROCK = "bedrock"  # {"system": str?, "messages": [{"role", "content": str}]}
    NOVA = "nova"  # {"schemaVersion", "system": [{"text"}], "messages": [{"role","content":[{"text"}]}]}
    OPENAI = "openai"  # {"messages": [{"role": "system"|"user"|"assistant", "content"}]}
    PROMPT_COMPLETION = "prompt-completion"  # {"prompt", "completion"} (JSONL, CSV, Parquet)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "assistant"]
    content: str


class ChatRecord(BaseModel):
    """One conversation. ``messages`` alternate user/assistant, starting with user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str | None = None
    messages: tuple[Message, ...] = Field(min_length=2)

    @property
    def prompt_messages(self) -> tuple[Message, ...]:
        """Every turn before the final assistant answer: what a model is asked to continue."""
        return self.messages[:-1]

    @property
    def answer(self) -> str:
        """The final assistant turn: the reference output in evaluation."""
        return self.messages[-1].content

    def texts(self) -> list[str]:
        return ([self.system] if self.system else []) + [m.content for m in self.messages]


def to_bedrock(record: ChatRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if record.system is not None:
        out["system"] = record.system
    out["messages"] = [{"role": m.role, "content": m.content} for m in record.messages]
    return out


def to_nova(record: ChatRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"schemaVersion": NOVA_SCHEMA_VERSION}
    if record.system is not None:
        out["system"] = [{"text": record.system}]
    out["messages"] = [{"role": m.role, "content": [{"text": m.content}]} for m in record.messages]
    return out


def from_nova(obj: dict[str, Any]) -> ChatRecord:
    system_blocks = obj.get("system") or []
    system = "".join(block["text"] for block in system_blocks) if system_blocks else None
    messages = tuple(
        Message(role=m["role"], content="".join(block["text"] for block in m["content"]))
        for m in obj["messages"]
    )
    return ChatRecord(system=system, messages=messages)


def to_openai(record: ChatRecord) -> dict[str, Any]:
    messages = [{"role": "system", "content": record.system}] if record.system is not None else []
    messages += [{"role": m.role, "content": m.content} for m in record.messages]
    return {"messages": messages}


def from_openai(obj: dict[str, Any]) -> ChatRecord:
    turns = list(obj["messages"])
    system = None
    if turns and turns[0]["role"] == "system":
        system = turns.pop(0)["content"]
    return ChatRecord(
        system=system, messages=tuple(Message(role=m["role"], content=m["content"]) for m in turns)
    )
