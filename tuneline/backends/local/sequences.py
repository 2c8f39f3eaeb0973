"""Turning chat records into training rows with assistant-only labels.

A record is rendered with the tokenizer's chat template and tokenized once, with character
offsets (:func:`tuneline.backends.local.chat_encoding.encode_chat`: linear in the conversation;
special tokens typed in the data stay text). Each assistant turn's span runs from the start of
its content (the assistant header is prompt, not answer) through the template's end-of-turn text
(so the model learns to stop), tool calls included. Tokens starting inside such a span keep their
id as label; every other label is ``-100``. Templates whose rendering of a conversation does not
start with the rendering of its earlier turns (some re-write history) are refused with a clear
error, as are templates that drop a record's tool calls, tools or reasoning.

Packing is TRL's (``SFTConfig(packing=True, packing_strategy="bfd")``, see
``tuneline.backends.local.recipe``): rows of several examples whose position ids restart per
example, so no token attends across examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tuneline.backends.local.chat_encoding import check_rendered, encode_chat
from tuneline.backends.local.hf_models import chat_messages, chat_tools
from tuneline.records import ChatRecord

__all__ = ["IGNORE_INDEX", "Example", "encode_record"]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_record(record: ChatRecord, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Example:
    """Token ids and assistant-only labels for one record, cut to ``max_length`` tokens.

    Rendering and tokenizing take time linear in the conversation, and text typed in the data
    that equals a special token stays text (:mod:`tuneline.backends.local.chat_encoding`)."""
    messages = chat_messages(record)
    where = f"the record starting {record.messages[0].content[:60]!r}"
    encoded = encode_chat(tokenizer, messages, generation_prompt=False, where=where, tools=chat_tools(record.tools))
    check_rendered(encoded.text, record.messages, record.tools, where)
    ids = encoded.input_ids
    labels = [token if inside else IGNORE_INDEX for token, inside in zip(ids, encoded.labelled(), strict=True)]
    # An example's first token is never predicted from inside the example; in a packed row it
    # would be predicted from the previous example's last token.
    labels[0] = IGNORE_INDEX
    truncated = len(ids) > max_length
    return Example(tuple(ids[:max_length]), tuple(labels[:max_length]), truncated)
