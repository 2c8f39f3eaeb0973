"""One reader for every record format: detect a record's format, convert it to its kind's model.

``detect_format(obj)`` looks at one decoded JSON object (per record, never per file) and names its
format; ``convert(obj, ...)`` turns it into one of the models of :mod:`tuneline.records`, or
raises :class:`FormatProblem` with a stable code (see ``codes.py``), the field, and a message that
says what to do. Published formats read (their public specifications, not one sample file):

- Bedrock/Claude chat ``{"system": str, "messages": [{"role", "content": str}]}``
- Nova ``bedrock-conversation-2024`` (any or no ``schemaVersion``): text, ``toolUse``,
  ``toolResult``, ``reasoningContent``, image/video/document blocks by ``s3Location``, ``toolConfig``
- OpenAI chat: ``system``/``user``/``assistant``/``tool`` roles, content parts, ``tool_calls``,
  ``tool_call_id``, ``name``, ``weight``, ``tools``
- ShareGPT ``{"conversations": [{"from", "value"}], "system"?, "tools"?}`` incl. ``function_call`` /
  ``observation`` turns
- Alpaca ``{"instruction", "input"?, "output", "system"?, "history"?}``
- prompt/completion; preference ``{"prompt", "chosen", "rejected"}`` and OpenAI DPO
  ``{"input", "preferred_output", "non_preferred_output"}``; KTO ``{"messages", "label": bool}``;
  RFT ``{"messages" ending in user, "reference_answer", ...}``; pretraining ``{"text"}`` / ``{"input"}``
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from tuneline.data.codes import ErrorCode as E
from tuneline.records import (
    ChatRecord,
    ConversationError,
    KtoRecord,
    MediaBlock,
    Message,
    PreferenceRecord,
    PretrainRecord,
    PromptRecord,
    Record,
    RecordFormat,
    RecordKind,
    RftRecord,
    ToolCall,
    ToolSpec,
    check_conversation,
)

__all__ = ["Conversion", "ExtraKeys", "FormatProblem", "KIND_OF_FORMAT", "convert", "convert_record", "detect_format"]

ExtraKeys = Literal["drop", "keep", "reject"]
F = RecordFormat

KIND_OF_FORMAT: dict[RecordFormat, RecordKind] = {
    F.BEDROCK: RecordKind.SFT,
    F.NOVA: RecordKind.SFT,
    F.OPENAI: RecordKind.SFT,
    F.PROMPT_COMPLETION: RecordKind.SFT,
    F.SHAREGPT: RecordKind.SFT,
    F.ALPACA: RecordKind.SFT,
    F.PREFERENCE: RecordKind.PREFERENCE,
    F.OPENAI_DPO: RecordKind.PREFERENCE,
    F.KTO: RecordKind.KTO,
    F.RFT: RecordKind.RFT,
    F.PRETRAIN: RecordKind.PRETRAIN,
}

# The keys each format reads; any other key is an extra key (data.extra_keys decides).
KNOWN_KEYS: dict[RecordFormat, frozenset[str]] = {
    F.BEDROCK: frozenset({"system", "messages"}),
    F.NOVA: frozenset({"schemaVersion", "system", "messages", "toolConfig"}),
    F.OPENAI: frozenset({"messages", "tools", "parallel_tool_calls"}),
    F.PROMPT_COMPLETION: frozenset({"prompt", "completion", "system"}),
    F.SHAREGPT: frozenset({"conversations", "system", "tools"}),
    F.ALPACA: frozenset({"instruction", "input", "output", "system", "history"}),
    F.PREFERENCE: frozenset({"prompt", "chosen", "rejected", "system"}),
    F.OPENAI_DPO: frozenset({"input", "preferred_output", "non_preferred_output"}),
    F.KTO: frozenset({"messages", "label", "system", "tools"}),
    F.RFT: frozenset({"messages", "reference_answer", "system", "tools"}),
    F.PRETRAIN: frozenset({"text", "input"}),
}

_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system",
    "function_call": "function_call", "observation": "observation", "tool": "observation",
}


# Unknown keys inside messages follow data.extra_keys too: (policy, keys dropped so far).
_EXTRA: ContextVar[tuple[str, list[str]]] = ContextVar("_EXTRA", default=("drop", []))


def _extra_message_keys(raw: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = [k for k in raw if k not in known]
    if not unknown:
        return
    policy, dropped = _EXTRA.get()
    if policy == "reject":
        raise FormatProblem(
            E.UNEXPECTED_KEY, f"{where}.{unknown[0]}",
            f'key "{unknown[0]}" is not part of a message (data.extra_keys is "reject"): set data.extra_keys to '
            '"drop" to train on the record without it',
        )
    base = where.split("[", 1)[0]
    dropped.extend(f"{base}[].{k}" for k in unknown if f"{base}[].{k}" not in dropped)


_OPENAI_MESSAGE_KEYS = frozenset(
    {"role", "content", "tool_calls", "tool_call_id", "name", "weight", "function_call", "reasoning_content"}
)
_SHAREGPT_TURN_KEYS = frozenset({"from", "value", "role", "content"})
_NOVA_MESSAGE_KEYS = frozenset({"role", "content"})


class FormatProblem(Exception):  # noqa: N818 - a record's problem, not a program error
    def __init__(self, code: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.field = field
        self.message = message


@dataclass
class Conversion:
    record: Record
    format: RecordFormat
    dropped_keys: list[str] = field(default_factory=list)


def _is_nova_blocks(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(b, dict) and "type" not in b for b in content)


def detect_format(obj: Any) -> RecordFormat | None:
    """The format of one record, from its keys; ``None`` when no known format fits."""
    if not isinstance(obj, dict):
        return None
    keys = obj.keys()
    if "conversations" in keys:
        return F.SHAREGPT
    if "preferred_output" in keys and "non_preferred_output" in keys:
        return F.OPENAI_DPO
    if "chosen" in keys and "rejected" in keys:
        return F.PREFERENCE
    if "instruction" in keys and "output" in keys:
        return F.ALPACA
    if "messages" in keys or keys == {"system"}:
        if "label" in keys:
            return F.KTO
        if "reference_answer" in keys:
            return F.RFT
        messages = obj.get("messages")
        if "schemaVersion" in keys or "toolConfig" in keys or isinstance(obj.get("system"), list) or (
            isinstance(messages, list) and any(isinstance(m, dict) and _is_nova_blocks(m.get("content")) for m in messages)
        ):
            return F.NOVA
        if "tools" in keys or (
            isinstance(messages, list)
            and any(isinstance(m, dict) and (m.get("role") in ("system", "tool") or "tool_calls" in m) for m in messages)
        ):
            return F.OPENAI
        return F.BEDROCK
    if "prompt" in keys and "completion" in keys:
        return F.PROMPT_COMPLETION
    if isinstance(obj.get("text"), str) or (isinstance(obj.get("input"), str) and "output" not in keys):
        return F.PRETRAIN
    return None


# ------------------------------------------------------------------------------------------
def _need_str(value: Any, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a string, not {_type(value)}')
    if not allow_empty and not value.strip():
        raise FormatProblem(E.EMPTY_CONTENT, where, f'"{where}" is empty: write its text or drop the record')
    return value


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _need_list(value: Any, where: str) -> list[Any]:
    if value is None:
        raise FormatProblem(E.MISSING_MESSAGES, where, f'the record has no "{where}" list')
    if not isinstance(value, list):
        raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a list, not {_type(value)}')
    if not value:
        raise FormatProblem(E.EMPTY_MESSAGES, where, f'"{where}" is empty: a record needs at least one user turn')
    return value


def _arguments(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a JSON object of arguments') from None
    if not isinstance(value, dict):
        raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a JSON object of arguments')
    return value


def _media(kind: str, value: Any, where: str) -> MediaBlock:
    location = value.get("source", {}).get("s3Location") if isinstance(value, dict) and isinstance(value.get("source"), dict) else None
    if not isinstance(location, dict) or not isinstance(location.get("uri"), str) or not location["uri"].startswith("s3://"):
        raise FormatProblem(
            E.UNSUPPORTED_CONTENT, where,
            f"unsupported_content: inline {kind} — training data refers to {kind}s by S3 location: upload the file "
            f'and give {{"source": {{"s3Location": {{"uri": "s3://..."}}}}}}',
        )
    return MediaBlock(type=kind, format=str(value.get("format") or ""), uri=location["uri"],  # type: ignore[arg-type]
                      bucket_owner=location.get("bucketOwner"))


def _nova_turns(raw: Any, where: str) -> list[Message]:
    if not isinstance(raw, dict):
        raise FormatProblem(E.WRONG_TYPE, where, f'{where} must be an object with "role" and "content"')
    _extra_message_keys(raw, _NOVA_MESSAGE_KEYS, where)
    role = raw.get("role")
    if role not in ("user", "assistant"):
        raise FormatProblem(E.UNKNOWN_ROLE, f"{where}.role", f'{where} has role {role!r}: Nova roles are "user" and "assistant"')
    blocks = raw.get("content")
    if isinstance(blocks, str):
        blocks = [{"text": blocks}]
    if not isinstance(blocks, list) or not blocks:
        raise FormatProblem(E.WRONG_TYPE, f"{where}.content", f"{where}.content must be a list of content blocks")
    texts: list[str] = []
    calls: list[ToolCall] = []
    media: list[MediaBlock] = []
    results: list[Message] = []
    reasoning: str | None = None
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        if not isinstance(block, dict) or len(block) != 1:
            raise FormatProblem(E.WRONG_TYPE, at, f"{at} must be one content block such as {{\"text\": ...}}")
        (name, value), = block.items()
        if name == "text":
            texts.append(_need_str(value, f"{at}.text", allow_empty=True))
        elif name in ("image", "video", "document"):
            media.append(_media(name, value, at))
        elif name == "toolUse" and isinstance(value, dict) and role == "assistant":
            calls.append(ToolCall(id=value.get("toolUseId"), name=_need_str(value.get("name"), f"{at}.toolUse.name"),
                                  arguments=_arguments(value.get("input", {}), f"{at}.toolUse.input")))
        elif name == "toolResult" and isinstance(value, dict) and role == "user":
            parts = value.get("content") or []
            text = "".join(
                p["text"] if isinstance(p.get("text"), str) else json.dumps(p.get("json"), ensure_ascii=False)
                for p in parts if isinstance(p, dict)
            )
            results.append(Message(role="tool", content=text, tool_call_id=value.get("toolUseId")))
        elif name == "reasoningContent" and isinstance(value, dict) and role == "assistant":
            reasoning = _need_str((value.get("reasoningText") or {}).get("text"), f"{at}.reasoningContent.reasoningText.text")
        else:
            raise FormatProblem(E.UNEXPECTED_KEY, at, f'{at} is a "{name}" block, which a {role} turn cannot hold')
    if results:
        if texts or media:
            raise FormatProblem(E.WRONG_TYPE, f"{where}.content", f"{where} mixes tool results with other content")
        return results
    return [Message(role=role, content="".join(texts), tool_calls=tuple(calls), media=tuple(media), reasoning=reasoning)]


def _openai_content(content: Any, where: str) -> tuple[str, list[MediaBlock]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a string or a list of content parts')
    texts: list[str] = []
    media: list[MediaBlock] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(_need_str(part.get("text"), f"{at}.text", allow_empty=True))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else part.get("image_url")
            if not isinstance(url, str) or not url.startswith("s3://"):
                raise FormatProblem(
                    E.UNSUPPORTED_CONTENT, at,
                    "unsupported_content: inline or web image — training data refers to images by S3 URI: "
                    "upload it and give its s3:// URI",
                )
            fmt = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
            media.append(MediaBlock(type="image", format="jpeg" if fmt == "jpg" else fmt, uri=url))
        else:
            raise FormatProblem(E.WRONG_TYPE, at, f"{at} must be a text or image_url content part")
    return "".join(texts), media


def _openai_turns(raw: Any, where: str) -> Message | tuple[str, str]:
    """A message, or ``("system", text)`` for a system turn."""
    if not isinstance(raw, dict):
        raise FormatProblem(E.WRONG_TYPE, where, f'{where} must be an object with "role" and "content"')
    _extra_message_keys(raw, _OPENAI_MESSAGE_KEYS, where)
    role = raw.get("role")
    if role in ("system", "developer"):
        text, _ = _openai_content(raw.get("content"), f"{where}.content")
        return ("system", text)
    if role not in ("user", "assistant", "tool", "function"):
        raise FormatProblem(
            E.UNKNOWN_ROLE, f"{where}.role",
            f'{where} has role {role!r}: use "system", "user", "assistant" or "tool"',
        )
    if "content" not in raw and not raw.get("tool_calls"):
        raise FormatProblem(E.WRONG_TYPE, f"{where}.content", f'{where} has no "content"')
    text, media = _openai_content(raw.get("content"), f"{where}.content")
    calls = []
    for j, call in enumerate(raw.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise FormatProblem(E.WRONG_TYPE, f"{where}.tool_calls[{j}]", "a tool call needs a \"function\" object")
        calls.append(ToolCall(id=call.get("id"), name=_need_str(fn.get("name"), f"{where}.tool_calls[{j}].function.name"),
                              arguments=_arguments(fn.get("arguments", {}), f"{where}.tool_calls[{j}].function.arguments")))
    if isinstance(raw.get("function_call"), dict):  # OpenAI's legacy single function call
        fn = raw["function_call"]
        calls.append(ToolCall(name=_need_str(fn.get("name"), f"{where}.function_call.name"),
                              arguments=_arguments(fn.get("arguments", {}), f"{where}.function_call.arguments")))
    weight = raw.get("weight")
    if weight is not None and weight not in (0, 1):
        raise FormatProblem(E.WRONG_TYPE, f"{where}.weight", f'{where}.weight must be 0 or 1')
    if role in ("tool", "function"):
        return Message(role="tool", content=text, tool_call_id=raw.get("tool_call_id"), name=raw.get("name"))
    if not text.strip() and not calls and not media:
        raise FormatProblem(E.EMPTY_CONTENT, f"{where}.content", f"{where} has empty content: write the turn's text or drop the record")
    return Message(role=role, content=text, tool_calls=tuple(calls), media=tuple(media),
                   name=raw.get("name"), weight=weight,
                   reasoning=raw.get("reasoning_content") if role == "assistant" and isinstance(raw.get("reasoning_content"), str) else None)


def _chat_messages(raw_messages: Any, where: str, fmt: RecordFormat) -> tuple[str | None, list[Message]]:
    items = _need_list(raw_messages, where)
    system: str | None = None
    out: list[Message] = []
    for i, raw in enumerate(items):
        at = f"{where}[{i}]"
        if fmt is F.NOVA:
            out.extend(_nova_turns(raw, at))
            continue
        if fmt is F.BEDROCK and isinstance(raw, dict) and not isinstance(raw.get("content"), str):
            if _is_nova_blocks(raw.get("content")):
                out.extend(_nova_turns(raw, at))
                continue
        turn = _openai_turns(raw, at)
        if isinstance(turn, tuple):
            if out or system is not None:
                raise FormatProblem(E.UNKNOWN_ROLE, f"{at}.role", f"{at} is a system turn after the conversation began: only the first turn may be the system prompt")
            system = turn[1]
        else:
            if fmt is F.BEDROCK and not isinstance(raw.get("content"), str):
                raise FormatProblem(E.WRONG_TYPE, f"{at}.content", f"{at}.content must be a string")
            if turn.role == "user" and not turn.content.strip() and not turn.media:
                raise FormatProblem(E.EMPTY_CONTENT, f"{at}.content", f"{at} has empty content: write the turn's text or drop the record")
            out.append(turn)
    return system, out


def _system(obj: dict[str, Any], fmt: RecordFormat) -> str | None:
    value = obj.get("system")
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(b, dict) and set(b) == {"text"} for b in value):
            raise FormatProblem(E.WRONG_TYPE, "system", '"system" must be a string, or Nova\'s list of {"text": ...} blocks')
        return "".join(_need_str(b["text"], "system", allow_empty=True) for b in value)
    return _need_str(value, "system", allow_empty=True)


def _tools(value: Any, where: str) -> tuple[ToolSpec, ...]:
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):  # ShareGPT (LLaMA-Factory) keeps the tool list as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a list of tools (or that list as JSON text)') from None
    if isinstance(value, dict) and isinstance(value.get("tools"), list):  # Nova toolConfig
        value = value["tools"]
    if not isinstance(value, list):
        raise FormatProblem(E.WRONG_TYPE, where, f'"{where}" must be a list of tools')
    specs = []
    for j, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise FormatProblem(E.WRONG_TYPE, f"{where}[{j}]", f"{where}[{j}] must be a tool object")
        if "toolSpec" in tool:
            spec = tool["toolSpec"] or {}
            params = (spec.get("inputSchema") or {}).get("json") or {}
        else:
            spec = tool.get("function", tool) if tool.get("type") == "function" else tool
            params = spec.get("parameters") or {}
        specs.append(ToolSpec(name=_need_str(spec.get("name"), f"{where}[{j}].name"),
                              description=str(spec.get("description") or ""),
                              parameters=params if isinstance(params, dict) else {}))
    return tuple(specs)


def _sharegpt(obj: dict[str, Any]) -> tuple[str | None, list[Message]]:
    items = _need_list(obj.get("conversations"), "conversations")
    system = _system(obj, F.SHAREGPT)
    out: list[Message] = []
    for i, turn in enumerate(items):
        at = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise FormatProblem(E.WRONG_TYPE, at, f'{at} must be an object with "from" and "value"')
        _extra_message_keys(turn, _SHAREGPT_TURN_KEYS, at)
        source = turn.get("from", turn.get("role"))
        role = _SHAREGPT_ROLES.get(source) if isinstance(source, str) else None
        if role is None:
            raise FormatProblem(
                E.UNKNOWN_ROLE, f"{at}.from",
                f'{at} is from {source!r}: use "human", "gpt", "system", "function_call" or "observation"',
            )
        value = _need_str(turn.get("value", turn.get("content")), f"{at}.value", allow_empty=role == "observation")
        if role == "system":
            if out or system is not None:
                raise FormatProblem(E.UNKNOWN_ROLE, f"{at}.from", f"{at} is a system turn after the conversation began")
            system = value
        elif role == "function_call":
            try:
                call = json.loads(value)
            except json.JSONDecodeError:
                raise FormatProblem(E.WRONG_TYPE, f"{at}.value", f'{at} is a function_call whose value is not JSON {{"name", "arguments"}}') from None
            calls = call if isinstance(call, list) else [call]
            parsed = tuple(
                ToolCall(name=_need_str(c.get("name") if isinstance(c, dict) else None, f"{at}.value.name"),
                         arguments=_arguments(c.get("arguments", {}), f"{at}.value.arguments"))
                for c in calls
            )
            # A function call right after the assistant's own words is part of that turn.
            if out and out[-1].role == "assistant" and not out[-1].tool_calls:
                out[-1] = out[-1].model_copy(update={"tool_calls": parsed})
            else:
                out.append(Message(role="assistant", content="", tool_calls=parsed))
        elif role == "observation":
            out.append(Message(role="tool", content=value))
        else:
            out.append(Message(role=role, content=value))  # type: ignore[arg-type]
    return system, out


def _alpaca(obj: dict[str, Any]) -> tuple[str | None, list[Message]]:
    instruction = _need_str(obj.get("instruction"), "instruction")
    extra = obj.get("input")
    if extra is not None:
        extra = _need_str(extra, "input", allow_empty=True)
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    messages: list[Message] = []
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise FormatProblem(E.WRONG_TYPE, "history", '"history" must be a list of [instruction, response] pairs')
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise FormatProblem(E.WRONG_TYPE, f"history[{i}]", f"history[{i}] must be an [instruction, response] pair")
        messages += [Message(role="user", content=_need_str(pair[0], f"history[{i}][0]")),
                     Message(role="assistant", content=_need_str(pair[1], f"history[{i}][1]"))]
    messages += [Message(role="user", content=prompt), Message(role="assistant", content=_need_str(obj.get("output"), "output"))]
    return _system(obj, F.ALPACA), messages


def _answer(value: Any, where: str) -> tuple[Message, ...]:
    """A preference answer: a string, one assistant message, or a list of messages."""
    if isinstance(value, str):
        return (Message(role="assistant", content=_need_str(value, where)),)
    if isinstance(value, dict):
        value = [value]
    _, turns = _chat_messages(value, where, F.OPENAI)
    return tuple(turns)


def _prompt(value: Any, where: str) -> tuple[str | None, tuple[Message, ...]]:
    if isinstance(value, str):
        return None, (Message(role="user", content=_need_str(value, where)),)
    system, turns = _chat_messages(value, where, F.OPENAI)
    return system, tuple(turns)


def _build(fmt: RecordFormat, obj: dict[str, Any], kind: RecordKind | None = None) -> Record:
    if fmt is F.SHAREGPT:
        system, messages = _sharegpt(obj)
        if messages:
            try:
                check_conversation(tuple(messages), last="assistant")
            except ConversationError as exc:
                at = "conversations" if exc.index is None else f"conversations[{exc.index}]"
                raise FormatProblem(exc.code, at, str(exc)) from None
        return ChatRecord(system=system, messages=tuple(messages), tools=_tools(obj.get("tools"), "tools"))
    if fmt is F.ALPACA:
        system, messages = _alpaca(obj)
        return ChatRecord(system=system, messages=tuple(messages))
    if fmt is F.PROMPT_COMPLETION:
        return ChatRecord(system=_system(obj, fmt), messages=(
            Message(role="user", content=_need_str(obj.get("prompt"), "prompt")),
            Message(role="assistant", content=_need_str(obj.get("completion"), "completion"))))
    if fmt is F.PRETRAIN:
        text = obj.get("text", obj.get("input"))
        return PretrainRecord(text=_need_str(text, "text" if "text" in obj else "input"))
    if fmt is F.PREFERENCE:
        system, prompt = _prompt(obj.get("prompt"), "prompt")
        return PreferenceRecord(system=_system(obj, fmt) or system, prompt=prompt,
                                chosen=_answer(obj.get("chosen"), "chosen"), rejected=_answer(obj.get("rejected"), "rejected"))
    if fmt is F.OPENAI_DPO:
        inp = obj.get("input")
        if not isinstance(inp, dict):
            raise FormatProblem(E.WRONG_TYPE, "input", '"input" must be an object with "messages"')
        system, prompt = _chat_messages(inp.get("messages"), "input.messages", F.OPENAI)
        return PreferenceRecord(system=system, prompt=tuple(prompt), tools=_tools(inp.get("tools"), "input.tools"),
                                chosen=_answer(obj.get("preferred_output"), "preferred_output"),
                                rejected=_answer(obj.get("non_preferred_output"), "non_preferred_output"))
    chat_fmt = F.OPENAI if fmt in (F.KTO, F.RFT) else fmt
    # Nova-style content blocks in a KTO/RFT record: read its turns as Nova's (a messages value that
    # is not a list is left to _chat_messages, which names the wrong type).
    turns = obj.get("messages")
    if fmt in (F.KTO, F.RFT) and isinstance(turns, list) and any(
        isinstance(m, dict) and _is_nova_blocks(m.get("content")) for m in turns
    ):
        chat_fmt = F.NOVA
    system, messages = _chat_messages(obj.get("messages"), "messages", chat_fmt)
    # A chat read as a prompt (data.kind: prompt) ends with the user turn a teacher answers.
    prompt = kind is RecordKind.PROMPT and fmt in (F.BEDROCK, F.NOVA, F.OPENAI)
    if messages:  # turn order first: its code says more than "too short"
        shift = 1 if system is not None and obj.get("system") is None else 0  # a leading system turn
        try:
            check_conversation(tuple(messages), last="user" if fmt is F.RFT or prompt else "assistant")
        except ConversationError as exc:
            at = "messages" if exc.index is None else f"messages[{exc.index + shift}].role"
            raise FormatProblem(exc.code, at, str(exc)) from None
    if fmt is F.OPENAI and obj.get("system") is not None:
        if system is not None:
            raise FormatProblem(E.UNEXPECTED_KEY, "system", 'the record has both a "system" key and a leading system message: keep only one')
    system = system if system is not None else _system(obj, fmt)
    tools = _tools(obj.get("toolConfig") if fmt is F.NOVA else obj.get("tools"), "toolConfig" if fmt is F.NOVA else "tools")
    if fmt is F.KTO:
        label = obj.get("label")
        if not isinstance(label, bool):
            raise FormatProblem(E.WRONG_TYPE, "label", f'"label" must be true (a good answer) or false (a bad one), not {_type(label)}')
        return KtoRecord(system=system, messages=tuple(messages), label=label, tools=tools)
    if fmt is F.RFT:
        return RftRecord(system=system, messages=tuple(messages), reference_answer=obj.get("reference_answer"), tools=tools)
    if prompt:
        return PromptRecord(system=system, messages=tuple(messages), tools=tools)
    return ChatRecord(system=system, messages=tuple(messages), tools=tools)


def _as_kind(record: Record, kind: RecordKind) -> Record:
    """The record as ``kind`` where that keeps its meaning; else a ``kind_mismatch`` problem."""
    if record.kind is kind:
        return record
    if kind is RecordKind.SFT and isinstance(record, KtoRecord):
        if not record.label:
            raise FormatProblem(
                E.UNDESIRABLE_ANSWER, "label",
                'the record\'s answer is labelled false (a bad answer): it must never be an SFT target. '
                "Train it with --kind kto (the local target trains KTO), or leave --kind unset",
            )
        return ChatRecord(system=record.system, messages=record.messages, tools=record.tools, metadata=record.metadata)
    if kind is RecordKind.SFT and isinstance(record, PreferenceRecord):
        return ChatRecord(system=record.system, messages=(*record.prompt, *record.chosen), tools=record.tools,
                          metadata=record.metadata)
    if kind is RecordKind.RFT and isinstance(record, ChatRecord) and record.messages[-1].role == "assistant":
        return RftRecord(system=record.system, messages=record.messages[:-1], reference_answer=record.answer,
                         tools=record.tools, metadata=record.metadata)
    raise FormatProblem(
        E.KIND_MISMATCH, None,
        f"the record is {record.kind.value} data and cannot be read as {kind.value} without changing what it means: "
        f"leave --kind unset or give {kind.value} records",
    )


def convert(
    obj: Any,
    fmt: RecordFormat | None = None,
    *,
    kind: RecordKind | None = None,
    extra_keys: ExtraKeys = "drop",
    known_extra: frozenset[str] = frozenset(),
) -> Conversion:
    """One decoded record -> its model. ``fmt`` ``None`` detects it; ``kind`` forces a kind."""
    if not isinstance(obj, dict):
        raise FormatProblem(E.UNKNOWN_FORMAT, None, f"the record is {_type(obj)}, not a JSON object such as {{\"messages\": [...]}}")
    fmt = F(fmt) if fmt is not None else detect_format(obj)
    if fmt is None:
        keys = ", ".join(sorted(obj)[:8]) or "none"
        raise FormatProblem(
            E.UNKNOWN_FORMAT, None,
            f"no known record format fits this record (keys: {keys}): give chat \"messages\", ShareGPT "
            '"conversations", Alpaca "instruction"/"output", "prompt"/"completion", "chosen"/"rejected" or "text" '
            "(or set --columns for other column names)",
        )
    token = _EXTRA.set((extra_keys, message_dropped := []))
    try:
        conv = _convert(obj, fmt, kind, extra_keys, KNOWN_KEYS[fmt] | known_extra)
    finally:
        _EXTRA.reset(token)
    conv.dropped_keys.extend(message_dropped)
    return conv


def _convert(obj: dict[str, Any], fmt: RecordFormat, kind: RecordKind | None, extra_keys: ExtraKeys,
             known: frozenset[str]) -> Conversion:
    extras = [k for k in obj if k not in known]
    if fmt is F.RFT:  # every other key is handed to the grader
        extras, keep = [], {k: obj[k] for k in obj if k not in known}
    elif extras and extra_keys == "reject":
        raise FormatProblem(
            E.UNEXPECTED_KEY, extras[0],
            f'key "{extras[0]}" is not part of {fmt.value} records (data.extra_keys is "reject"): set '
            'data.extra_keys to "drop" or "keep" to train on the record as it is',
        )
    else:
        keep = {k: obj[k] for k in extras} if extra_keys == "keep" else {}
    try:
        record = _build(fmt, obj, RecordKind(kind) if kind is not None else None)
        if keep:
            record = record.model_copy(update={"metadata": keep})
        if kind is not None:
            record = _as_kind(record, RecordKind(kind))
    except ValidationError as exc:
        raise _problem(exc) from None
    except ConversationError as exc:
        raise FormatProblem(exc.code, "messages" if exc.index is None else f"messages[{exc.index}].role", str(exc)) from None
    return Conversion(record=record, format=fmt, dropped_keys=extras if extra_keys == "drop" else [])


def _problem(exc: ValidationError) -> FormatProblem:
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ConversationError):
        return FormatProblem(cause.code, "messages", str(cause))
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(cause) if cause is not None else first.get("msg", "invalid record")
    code = E.EMPTY_MESSAGES if first.get("type") == "too_short" else E.WRONG_TYPE
    return FormatProblem(code, where or None, f"{where + ': ' if where else ''}{message}")


def convert_record(obj: Any, fmt: RecordFormat | None = None, *, kind: RecordKind | None = None) -> Record:
    return convert(obj, fmt, kind=kind).record
