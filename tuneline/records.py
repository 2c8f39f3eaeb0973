"""Training records: the one in-memory model per record kind, and the on-disk formats.

Every input format (Bedrock/Claude chat, Nova ``bedrock-conversation-2024``, OpenAI chat and DPO,
ShareGPT, Alpaca, prompt/completion, KTO, RFT and pretraining text) is converted into exactly one
of these models, chosen by the record's :class:`RecordKind`:

=============  =====================  ====================================================
kind           model                  what it holds
=============  =====================  ====================================================
``sft``        :class:`ChatRecord`    system?, messages ending in the assistant answer
``preference`` :class:`PreferenceRecord`  prompt turns + one chosen and one rejected answer
``kto``        :class:`KtoRecord`     messages ending in an answer + ``label`` (good/bad)
``rft``        :class:`RftRecord`     messages ending in a user turn + ``reference_answer``
``prompt``     :class:`PromptRecord`  messages ending in a user turn, nothing else: a
                                      teacher model answers it (Bedrock distillation)
``pretrain``   :class:`PretrainRecord` plain ``text``
=============  =====================  ====================================================

A message holds text and, where the conversation uses them, tool calls (assistant), tool results
(role ``tool``), reasoning (assistant) and media blocks referenced by S3 URI. Writers
(:func:`to_bedrock`, :func:`to_nova`, :func:`to_openai`) render a record in a target's shape and
never render an empty system prompt.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

__all__ = [
    "NOVA_SCHEMA_VERSION",
    "ChatRecord",
    "ConversationError",
    "KtoRecord",
    "MediaBlock",
    "Message",
    "PreferenceRecord",
    "PretrainRecord",
    "PromptRecord",
    "Record",
    "RecordFormat",
    "RecordKind",
    "RftRecord",
    "TextField",
    "ToolCall",
    "ToolSpec",
    "check_conversation",
    "from_nova",
    "from_openai",
    "record_from_dict",
    "record_texts",
    "record_to_dict",
    "reference_chat",
    "replace_texts",
    "to_bedrock",
    "to_bedrock_rft",
    "to_nova",
    "to_openai",
]

NOVA_SCHEMA_VERSION = "bedrock-conversation-2024"


class RecordFormat(StrEnum):
    """On-disk record formats Tuneline reads (``--format``) and writes (a target's output)."""

    BEDROCK = "bedrock"  # {"system": str?, "messages": [{"role", "content": str}]}
    NOVA = "nova"  # {"schemaVersion"?, "system": [{"text"}], "messages": [{"role","content":[blocks]}]}
    OPENAI = "openai"  # {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content", ...}], "tools"?}
    PROMPT_COMPLETION = "prompt-completion"  # {"prompt", "completion"} (JSONL, CSV, Parquet)
    SHAREGPT = "sharegpt"  # {"conversations": [{"from", "value"}], "system"?, "tools"?}
    ALPACA = "alpaca"  # {"instruction", "input"?, "output", "system"?, "history"?}
    PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"} (strings or message lists)
    OPENAI_DPO = "openai-dpo"  # {"input": {"messages"}, "preferred_output": [...], "non_preferred_output": [...]}
    KTO = "kto"  # {"messages": [...], "label": bool}
    RFT = "rft"  # {"messages": [... user], "reference_answer": ..., other grader fields}
    PRETRAIN = "pretrain"  # {"text": str} or Bedrock's {"input": str}


class RecordKind(StrEnum):
    """What a record trains: each kind has its own model below and its own trainers."""

    SFT = "sft"
    PREFERENCE = "preference"
    KTO = "kto"
    RFT = "rft"
    PRETRAIN = "pretrain"
    PROMPT = "prompt"


_FROZEN = ConfigDict(frozen=True, extra="forbid")


class _Hashable(BaseModel):
    """Frozen and hashable although some fields are JSON objects (dicts): hashed by their JSON."""

    model_config = _FROZEN

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.model_dump_json()))


class ToolSpec(_Hashable):
    """A tool the conversation may call: name, description and JSON-schema parameters."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, JsonValue] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolCall(_Hashable):
    """One call of a tool by the assistant. ``arguments`` is the decoded JSON object."""

    model_config = _FROZEN

    id: str | None = None
    name: str = Field(min_length=1)
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class MediaBlock(_Hashable):
    """An image, video or document the turn refers to, by S3 location (never inlined bytes)."""

    model_config = _FROZEN

    type: Literal["image", "video", "document"]
    format: str = Field(description="File format as the target names it: png, jpeg, mp4, pdf, ...")
    uri: str = Field(pattern=r"^s3://", description="s3://bucket/key of the file")
    bucket_owner: str | None = None


class Message(_Hashable):
    """One turn. ``content`` is its text ('' for an assistant turn made only of tool calls).

    ``role="tool"`` is a tool result (``tool_call_id`` names the call it answers); ``tool_calls``
    and ``reasoning`` belong to assistant turns; ``weight`` is OpenAI's per-turn 0/1 training mask.
    """

    model_config = _FROZEN

    role: Literal["user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None
    media: tuple[MediaBlock, ...] = ()
    weight: Literal[0, 1] | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role != "assistant" and (self.tool_calls or self.reasoning is not None):
            raise ValueError(f"a {self.role} turn cannot hold tool calls or reasoning")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError("only a tool turn answers a tool call (tool_call_id)")
        return self

    @property
    def is_plain_text(self) -> bool:
        return not (self.tool_calls or self.tool_call_id or self.reasoning is not None or self.media
                    or self.role == "tool")


class ConversationError(ValueError):
    """A turn order no trainer can use; ``code`` is the stable error code (tuneline.data.codes)."""

    def __init__(self, code: str, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.index = index  # the turn it is about, when one


def check_conversation(messages: tuple[Message, ...], *, last: Literal["assistant", "user"]) -> None:
    """User opens; assistant turns and tool results follow in a valid order; ``last`` closes."""
    if messages[0].role != "user":
        raise ConversationError(
            "first_not_user", f'the conversation starts with "{messages[0].role}": the first turn must be "user"', 0
        )
    for i, (prev, cur) in enumerate(zip(messages, messages[1:], strict=False), start=1):
        if cur.role == "tool":
            if not (prev.role == "tool" or prev.tool_calls):
                raise ConversationError(
                    "orphan_tool_result",
                    f"turn {i} is a tool result, but no assistant tool call comes before it: "
                    "give the previous assistant turn its tool call",
                    i,
                )
        elif cur.role == prev.role:
            raise ConversationError(
                "roles_not_alternating",
                f'two "{cur.role}" turns in a row at turn {i}: merge them, so that user and assistant alternate',
                i,
            )
        elif cur.role == "user" and prev.role == "assistant" and prev.tool_calls:
            raise ConversationError(
                "orphan_tool_result",
                f"the tool calls of turn {i - 1} get no tool result before the next user turn: add the results",
                i - 1,
            )
    if messages[-1].role != last:
        hint = (" (add the assistant answer it lacks; prompts a teacher model answers, for "
                "distillation, are read with data.kind: prompt)" if last == "assistant"
                else " (records of this kind end with the user turn the model is to answer; a conversation "
                     "that already holds its answer is SFT data: read it so, without data.kind)")
        raise ConversationError(
            "last_not_assistant" if last == "assistant" else "last_not_user",
            f'the conversation ends with "{messages[-1].role}": the last turn must be "{last}"{hint}',
            len(messages) - 1,
        )


class _Base(_Hashable):
    model_config = _FROZEN
    kind: ClassVar[RecordKind]

    metadata: dict[str, JsonValue] = Field(
        default_factory=dict, description="Extra input keys kept with data.extra_keys: keep."
    )


class ChatRecord(_Base):
    """A supervised conversation (kind ``sft``): the assistant turns are what the model learns."""

    kind: ClassVar[RecordKind] = RecordKind.SFT

    system: str | None = None
    messages: tuple[Message, ...] = Field(min_length=2)
    tools: tuple[ToolSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ChatRecord:
        check_conversation(self.messages, last="assistant")
        return self

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


class PreferenceRecord(_Base):
    """One prompt with a preferred and a dispreferred answer (DPO and friends)."""

    kind: ClassVar[RecordKind] = RecordKind.PREFERENCE

    system: str | None = None
    prompt: tuple[Message, ...] = Field(min_length=1, description="The turns before the answers; ends with user.")
    chosen: tuple[Message, ...] = Field(min_length=1, description="The preferred answer turn(s).")
    rejected: tuple[Message, ...] = Field(min_length=1, description="The dispreferred answer turn(s).")
    tools: tuple[ToolSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> PreferenceRecord:
        check_conversation(self.prompt, last="user")
        for name, answer in (("chosen", self.chosen), ("rejected", self.rejected)):
            if answer[0].role != "assistant" or answer[-1].role != "assistant":
                raise ValueError(f'"{name}" must be the assistant answer to the prompt')
        if self.chosen == self.rejected:
            raise ValueError('"chosen" and "rejected" are the same answer: nothing to prefer')
        return self

    def texts(self) -> list[str]:
        return ([self.system] if self.system else []) + [
            m.content for m in (*self.prompt, *self.chosen, *self.rejected)
        ]


class KtoRecord(_Base):
    """A conversation whose final answer is labelled desirable (``True``) or undesirable (``False``).

    An undesirable answer must never become an SFT target: only KTO-capable trainers take it.
    """

    kind: ClassVar[RecordKind] = RecordKind.KTO

    system: str | None = None
    messages: tuple[Message, ...] = Field(min_length=2)
    label: bool
    tools: tuple[ToolSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> KtoRecord:
        check_conversation(self.messages, last="assistant")
        return self

    def texts(self) -> list[str]:
        return ([self.system] if self.system else []) + [m.content for m in self.messages]


class RftRecord(_Base):
    """A prompt for reinforcement fine-tuning: the model answers, a grader scores the answer.

    ``reference_answer`` and every other key of the input (kept in ``metadata``) are handed to the
    grader unchanged.
    """

    kind: ClassVar[RecordKind] = RecordKind.RFT

    system: str | None = None
    messages: tuple[Message, ...] = Field(min_length=1)
    reference_answer: JsonValue = None
    tools: tuple[ToolSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> RftRecord:
        check_conversation(self.messages, last="user")
        return self

    def texts(self) -> list[str]:
        return ([self.system] if self.system else []) + [m.content for m in self.messages]


class PromptRecord(_Base):
    """A prompt alone, for distillation: the conversation so far, ending with the user turn that a
    teacher model answers; the student is trained on the teacher's answers. Unlike
    :class:`RftRecord` nothing comes with it to judge an answer by. Only read as this kind when
    asked (``data.kind: prompt``): a conversation without its answer is no SFT record."""

    kind: ClassVar[RecordKind] = RecordKind.PROMPT

    system: str | None = None
    messages: tuple[Message, ...] = Field(min_length=1)
    tools: tuple[ToolSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> PromptRecord:
        check_conversation(self.messages, last="user")
        return self

    def texts(self) -> list[str]:
        return ([self.system] if self.system else []) + [m.content for m in self.messages]


class PretrainRecord(_Base):
    """Unstructured text for continued pre-training."""

    kind: ClassVar[RecordKind] = RecordKind.PRETRAIN

    text: str = Field(min_length=1)

    def texts(self) -> list[str]:
        return [self.text]


Record = ChatRecord | PreferenceRecord | KtoRecord | RftRecord | PretrainRecord | PromptRecord

_MODELS: dict[RecordKind, type[_Base]] = {
    m.kind: m for m in (ChatRecord, PreferenceRecord, KtoRecord, RftRecord, PretrainRecord, PromptRecord)
}


def record_to_dict(record: Record) -> dict[str, Any]:
    """The record as a JSON-able dict with its ``kind``, omitting defaults (round-trips with
    :func:`record_from_dict`)."""
    body = record.model_dump(mode="json", exclude_defaults=True)
    metadata = body.pop("metadata", None)  # last: the record first, what travels with it after
    return {"kind": record.kind.value, **body, **({"metadata": metadata} if metadata else {})}


def record_from_dict(obj: dict[str, Any]) -> Record:
    """Inverse of :func:`record_to_dict`."""
    body = dict(obj)
    kind = RecordKind(body.pop("kind", RecordKind.SFT))
    return _MODELS[kind].model_validate(body)  # type: ignore[return-value]


def reference_chat(record: Record) -> ChatRecord | None:
    """The conversation a model's answer is evaluated against, for a held-out record of any kind.

    SFT: the record. Preference: the prompt and the chosen answer. KTO: the conversation when its
    answer is labelled desirable; an undesirable answer is no reference (``None``). RFT: the prompt
    and the reference answer (JSON other than a string as compact JSON text), which the graders
    score as they do in training. Pretraining text has no prompt to answer, and a distillation
    prompt no answer (``None``).
    """
    if isinstance(record, ChatRecord):
        return record
    if isinstance(record, PreferenceRecord):
        return ChatRecord(system=record.system, messages=(*record.prompt, *record.chosen), tools=record.tools)
    if isinstance(record, KtoRecord):
        return ChatRecord(system=record.system, messages=record.messages, tools=record.tools) if record.label else None
    if isinstance(record, RftRecord):
        answer = record.reference_answer
        text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        return ChatRecord(system=record.system, tools=record.tools,
                          messages=(*record.messages, Message(role="assistant", content=text)))
    return None


# ------------------------------------------------------------------------------------------
# Texts: every string of a record that is written out, in a fixed order, with where it sits
# ------------------------------------------------------------------------------------------
class TextField(NamedTuple):
    """One text of a record: its place in :func:`record_to_dict`'s dict, a role and the text.

    ``role`` says what the text is to the rules that read texts (PII, dedupe, token counts): a
    turn's role, ``chosen`` / ``rejected`` (preference answers), ``desirable`` / ``undesirable``
    (a KTO answer, so that a good and a bad label of the same answer are different records),
    ``reasoning``, ``tool_call`` (a string in a call's arguments), ``reference`` (an RFT
    reference answer), ``text`` (pretraining), ``metadata`` (a kept extra key, not trained on).
    """

    path: tuple[str | int, ...]
    role: str
    text: str

    @property
    def field(self) -> str:
        """The path as error messages name fields: ``chosen[0].content``, ``metadata.user``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


def _string_leaves(value: Any, path: tuple[str | int, ...], role: str) -> list[TextField]:
    if isinstance(value, str):
        return [TextField(path, role, value)]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _string_leaves(v, (*path, k), role)]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _string_leaves(v, (*path, i), role)]
    return []


def _turn_texts(
    turns: list[dict[str, Any]], key: str, *, role: str | None = None, last_role: str | None = None
) -> list[TextField]:
    """The texts of the turns under ``key``; ``role`` names every turn's content, ``last_role``
    only the final turn's (else each turn's own role)."""
    fields: list[TextField] = []
    for i, turn in enumerate(turns):
        if "reasoning" in turn:
            fields.append(TextField((key, i, "reasoning"), "reasoning", turn["reasoning"]))
        named = last_role if last_role is not None and i == len(turns) - 1 else role
        fields.append(TextField((key, i, "content"), named or turn["role"], turn["content"]))
        for j, call in enumerate(turn.get("tool_calls", ())):
            fields += _string_leaves(call.get("arguments", {}), (key, i, "tool_calls", j, "arguments"), "tool_call")
    return fields


def record_texts(record: Record) -> list[TextField]:
    """Every text of ``record`` except its system prompt, in one fixed order (see :class:`TextField`).

    The order is a contract: :func:`replace_texts` takes replacements by position in this list.
    """
    body = record_to_dict(record)
    fields: list[TextField] = []
    if isinstance(record, PretrainRecord):
        fields.append(TextField(("text",), "text", record.text))
    elif isinstance(record, PreferenceRecord):
        fields += _turn_texts(body["prompt"], "prompt")
        fields += _turn_texts(body["chosen"], "chosen", role="chosen")
        fields += _turn_texts(body["rejected"], "rejected", role="rejected")
    elif isinstance(record, KtoRecord):
        fields += _turn_texts(body["messages"], "messages", last_role="desirable" if record.label else "undesirable")
    else:
        fields += _turn_texts(body["messages"], "messages")
    if isinstance(record, RftRecord):
        fields += _string_leaves(body.get("reference_answer"), ("reference_answer",), "reference")
    fields += _string_leaves(body.get("metadata", {}), ("metadata",), "metadata")
    return fields


def replace_texts(record: Record, system: str | None, texts: dict[int, str]) -> Record:
    """``record`` with its system prompt and the texts at these positions of :func:`record_texts`
    replaced (redaction): everything else, structure included, stays as it was."""
    body = record_to_dict(record)
    if system is not None:
        body["system"] = system
    fields = record_texts(record)
    for position, text in texts.items():
        *parents, last = fields[position].path
        node: Any = body
        for part in parents:
            node = node[part]
        node[last] = text
    return record_from_dict(body)


# ------------------------------------------------------------------------------------------
# Writers: one record in a target's training shape
# ------------------------------------------------------------------------------------------
def _has_system(system: str | None) -> bool:
    return system is not None and system.strip() != ""


def to_bedrock(record: ChatRecord) -> dict[str, Any]:
    """Bedrock's Claude 3 Haiku fine-tuning shape: text-only, system as a string when set."""
    out: dict[str, Any] = {}
    if _has_system(record.system):
        out["system"] = record.system
    out["messages"] = [{"role": m.role, "content": m.content} for m in record.messages]
    return out


def _nova_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.reasoning is not None:
        blocks.append({"reasoningContent": {"reasoningText": {"text": message.reasoning}}})
    for media in message.media:
        location: dict[str, Any] = {"uri": media.uri}
        if media.bucket_owner:
            location["bucketOwner"] = media.bucket_owner
        blocks.append({media.type: {"format": media.format, "source": {"s3Location": location}}})
    if message.content:
        blocks.append({"text": message.content})
    for call in message.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id or call.name, "name": call.name, "input": call.arguments}})
    return blocks


def to_nova(record: ChatRecord | PromptRecord) -> dict[str, Any]:
    """Nova's ``bedrock-conversation-2024`` shape. Tool results become user turns of
    ``toolResult`` blocks (consecutive results share one turn), tools go in ``toolConfig``. It is
    also the shape of Bedrock's distillation prompts for every student model."""
    out: dict[str, Any] = {"schemaVersion": NOVA_SCHEMA_VERSION}
    if _has_system(record.system):
        out["system"] = [{"text": record.system}]
    if record.tools:
        out["toolConfig"] = {
            "tools": [
                {"toolSpec": {"name": t.name, "description": t.description, "inputSchema": {"json": t.parameters}}}
                for t in record.tools
            ]
        }
    messages: list[dict[str, Any]] = []
    for m in record.messages:
        if m.role == "tool":
            block = {"toolResult": {"toolUseId": m.tool_call_id or m.name or "", "content": [{"text": m.content}]}}
            if messages and messages[-1]["role"] == "user" and "toolResult" in messages[-1]["content"][-1]:
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        else:
            messages.append({"role": m.role, "content": _nova_blocks(m)})
    out["messages"] = messages
    return out


def _openai_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id or f"call_{i}", "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
            for i, c in enumerate(m.tool_calls)
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.weight is not None:
        out["weight"] = m.weight
    return out


def to_openai(record: ChatRecord) -> dict[str, Any]:
    """OpenAI chat fine-tuning shape (system as a leading turn, ``tools`` as functions)."""
    return _openai_chat(record.system, record.messages, record.tools)


def _openai_chat(system: str | None, turns: tuple[Message, ...], tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if _has_system(system) else []
    messages += [_openai_message(m) for m in turns]
    out: dict[str, Any] = {"messages": messages}
    if tools:
        out["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in tools
        ]
    return out


def to_bedrock_rft(record: RftRecord) -> dict[str, Any]:
    """Bedrock's reinforcement fine-tuning line: OpenAI-style ``messages`` ending with the user
    turn, ``reference_answer``, and every other field of the input (``metadata``) beside them,
    which Bedrock hands to the grader Lambda unchanged."""
    out = _openai_chat(record.system, record.messages, record.tools)
    out["reference_answer"] = record.reference_answer
    out.update(record.metadata)
    return out


# ------------------------------------------------------------------------------------------
# Readers of already-valid dicts (the checked, per-record reader is tuneline.data.formats)
# ------------------------------------------------------------------------------------------
def from_nova(obj: dict[str, Any]) -> ChatRecord:
    from tuneline.data.formats import convert_record

    record = convert_record(obj, RecordFormat.NOVA)
    assert isinstance(record, ChatRecord)
    return record


def from_openai(obj: dict[str, Any]) -> ChatRecord:
    from tuneline.data.formats import convert_record

    record = convert_record(obj, RecordFormat.OPENAI)
    assert isinstance(record, ChatRecord)
    return record
