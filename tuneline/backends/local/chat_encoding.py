"""Rendering a conversation with its chat template and tokenizing it: in time linear in the
conversation, with the text users typed always tokenized as text.

**Linear.** Finding which tokens are the assistant's used to render every prefix of the
conversation (quadratic: a record of 8k messages took minutes). Here the conversation is rendered
once with each message's content replaced by a unique placeholder: where the placeholders land
is where the contents are, and the text between them is the template's. Substituting the real
contents must give exactly the template's own rendering of the real conversation (checked: one
more render); a template that transforms contents (``| trim`` of padded text, say) or renders
them more than once fails that check and falls back to rendering prefixes, which is exact for
any template that renders conversations prefix by prefix.

**Typed special tokens stay text.** A support ticket that contains ``<|eot_id|>`` or
``<|im_end|>`` must not end the turn early or open a new one: a tokenizer matches its added
tokens anywhere in the string it is given. When a message's content contains one, the
conversation is tokenized piece by piece -- the template's pieces as usual, each content with
``split_special_tokens=True`` -- so the template's markers are special tokens and the user's
characters are ordinary ones. Conversations without such text are tokenized in one call, exactly
as before (the same ids as tokenizing the rendered string).

An assistant turn's label span runs from the start of its content through the template's
end-of-turn text after it (so the model learns to stop); the header before it is prompt.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tuneline.errors import BackendError
from tuneline.records import Message, ToolSpec

__all__ = [
    "EncodedChat",
    "check_rendered",
    "encode_chat",
    "special_token_pattern",
]


@dataclass(frozen=True)
class EncodedChat:
    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    label_spans: list[tuple[int, int]]  # character spans of assistant turns (content + end of turn)

    def labelled(self) -> list[bool]:
        """Per token: does it start inside an assistant span (one linear merge of both lists)."""
        out: list[bool] = []
        spans = self.label_spans
        j = 0
        for begin, _ in self.offsets:
            while j < len(spans) and spans[j][1] <= begin:
                j += 1
            out.append(j < len(spans) and spans[j][0] <= begin < spans[j][1])
        return out


Tools = Sequence[dict[str, Any]] | None


def check_rendered(text: str, turns: Sequence[Message], tools: Sequence[ToolSpec], where: str) -> None:
    """Refuse a rendering that lost what the record trains: a template that ignores tool calls,
    tool specs or reasoning would silently train the model on a different conversation."""
    lost = [f"the tool call {c.name!r}" for m in turns for c in m.tool_calls if c.name not in text]
    lost += [f"the tool {t.name!r}" for t in tools if t.name not in text]
    lost += ["a reasoning text" for m in turns if m.reasoning and m.reasoning.strip() not in text]
    if lost:
        raise BackendError(
            f"the model's chat template does not render {lost[0]} of {where}: train tool-use or reasoning "
            "records with a model whose chat template renders tool_calls, tools and reasoning_content "
            "(e.g. Llama 3.1+, Qwen 2.5/3), or prepare the data without them"
        )


def _render(tokenizer: Any, messages: Sequence[dict[str, Any]], generation_prompt: bool, tools: Tools = None) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tools=list(tools) if tools else None, tokenize=False, add_generation_prompt=generation_prompt
    )


@lru_cache(maxsize=32)
def _pattern_for(tokens: tuple[str, ...]) -> re.Pattern[str] | None:
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def special_token_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A regex matching any token the tokenizer would match as a whole inside text (its added tokens)."""
    return _pattern_for(tuple(tokenizer.get_added_vocab()))


def _locate_contents(
    tokenizer: Any, messages: Sequence[dict[str, Any]], generation_prompt: bool, tools: Tools = None
) -> tuple[str, list[tuple[int, int]], str | None] | None:
    """(text, content spans, end-of-turn text after an assistant content) from one placeholder
    render, or None where the template does not render contents verbatim, once each."""
    nonce = uuid.uuid4().hex
    holders = [f"TLC{nonce}x{i}x" for i in range(len(messages))]
    skeleton = _render(
        tokenizer, [{**m, "content": h} for m, h in zip(messages, holders, strict=True)], generation_prompt, tools
    )
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    length = 0
    for message, holder in zip(messages, holders, strict=True):
        at = skeleton.find(holder, cursor)
        if at < 0 or skeleton.find(holder, at + len(holder)) >= 0:
            return None
        pieces.append(skeleton[cursor:at])
        length += at - cursor
        spans.append((length, length + len(message["content"])))
        pieces.append(message["content"])
        length += len(message["content"])
        cursor = at + len(holder)
    pieces.append(skeleton[cursor:])
    text = "".join(pieces)
    if text != _render(tokenizer, messages, generation_prompt, tools):
        return None
    end_of_turn: str | None = None
    first_assistant = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if first_assistant is not None:
        probe = _render(
            tokenizer,
            [{**m, "content": h} for m, h in zip(messages[: first_assistant + 1], holders, strict=False)],
            False,
            tools,
        )
        end_of_turn = probe[probe.index(holders[first_assistant]) + len(holders[first_assistant]) :]
        for (_, end), message in zip(spans, messages, strict=True):
            if message["role"] == "assistant" and not text.startswith(end_of_turn, end):
                return None
    return text, spans, end_of_turn


def _prefix_spans(
    tokenizer: Any, messages: Sequence[dict[str, Any]], text: str, where: str, tools: Tools = None
) -> list[tuple[int, int]]:
    """The assistant spans by rendering prefixes: quadratic, for templates the fast path refuses."""
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], True, tools)
        through = _render(tokenizer, messages[: index + 1], False, tools)
        if not text.startswith(prompt) or not text.startswith(through) or len(through) <= len(prompt):
            raise BackendError(
                f"the chat template does not render conversations prefix by prefix (turn {index} of {where}), "
                "so the assistant's tokens cannot be located; use a template without history rewriting"
            )
        spans.append((len(prompt), len(through)))
    return spans


def _tokenize(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]


def _tokenize_pieces(
    tokenizer: Any, text: str, content_spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Template pieces with special tokens recognised, contents with every character as text."""
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    cursor = 0
    bounds = [(start, end, True) for start, end in content_spans]
    for start, end, is_content in [*bounds, (len(text), len(text), False)]:
        for piece_start, piece_end, as_text in ((cursor, start, False), (start, end, is_content)):
            if piece_end <= piece_start:
                continue
            encoding = tokenizer(
                text[piece_start:piece_end],
                add_special_tokens=False,
                return_offsets_mapping=True,
                split_special_tokens=as_text,
            )
            ids.extend(encoding["input_ids"])
            offsets.extend((piece_start + b, piece_start + e) for b, e in encoding["offset_mapping"])
        cursor = max(cursor, end)
    return ids, offsets


def encode_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    *,
    generation_prompt: bool = False,
    where: str = "a record",
    tools: Tools = None,
) -> EncodedChat:
    """Render ``messages`` (and ``tools``, in the JSON-schema form chat templates take) with the
    tokenizer's chat template and tokenize it (see the module doc).

    An assistant turn with tool calls renders them after its content: the fast path then finds
    no end-of-turn right after the content and the prefix renders locate the turn, calls included.
    """
    located = _locate_contents(tokenizer, messages, generation_prompt, tools)
    pattern = special_token_pattern(tokenizer)
    typed_special = pattern is not None and any(pattern.search(m["content"]) for m in messages)
    if located is None:
        text = _render(tokenizer, messages, generation_prompt, tools)
        spans = [] if generation_prompt else _prefix_spans(tokenizer, messages, text, where, tools)
        if typed_special:
            raise BackendError(
                f"{where} contains text that is one of the tokenizer's special tokens, and its chat template "
                "changes or repeats message contents, so that text cannot be kept as plain text; use a chat "
                "template that renders each message's content as given"
            )
        ids, offsets = _tokenize(tokenizer, text)
        return EncodedChat(text, ids, offsets, spans)
    text, content_spans, end_of_turn = located
    label_spans = [
        (start, end + len(end_of_turn or ""))
        for (start, end), message in zip(content_spans, messages, strict=True)
        if message["role"] == "assistant"
    ]
    if typed_special:
        ids, offsets = _tokenize_pieces(tokenizer, text, content_spans)
    else:
        ids, offsets = _tokenize(tokenizer, text)
    return EncodedChat(text, ids, offsets, label_spans)
