"""Turning chat records into training rows: assistant-only labels, packing, padding.

**Labels.** A record is rendered with the tokenizer's chat template and tokenized once, with
character offsets (:func:`tuneline.backends.local.chat_encoding.encode_chat`: linear in the
conversation; special tokens typed in the data stay text). Each assistant turn's span runs from
the start of its content (the assistant header is prompt, not answer) through the template's
end-of-turn text (so the model learns to stop). Tokens starting inside such a span keep their id
as label; every other label is ``-100``. Templates whose rendering of a conversation does not
start with the rendering of its earlier turns (some re-write history) are refused with a clear
error.

**Packing.** Examples are placed, in their shuffled order, into rows of at most ``row_length``
tokens: each goes into the first open row with room (a bounded first-fit, which keeps rows nearly
full without sorting the data by length). Each row carries ``position_ids`` that restart at 0 for
every example and a block-diagonal causal attention mask, so a token attends only to earlier
tokens *of its own example*: packing changes the batch layout, never what any example sees.

**Padding.** Without packing, a micro-batch is right-padded to its longest row with an ordinary
attention mask.

**Loss on the labelled positions only.** Only assistant tokens carry a loss: about a third of the
tokens of chat data. :func:`loss_sum` runs the model's decoder on every token but its output
layer (and the softmax over the vocabulary) only where a label is, the same loss for a fraction
of that cost -- a large share of a small model's step. Some models transform the logits after the
output layer (soft-capping, scaling): :func:`split_output_layer` offers the split only for model
types known to apply the output layer alone, and only where decoder and output layer reproduce the
model's own logits on a real batch; otherwise the loss is computed from the full logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneline.backends.hf_models import chat_messages, chat_tools
from tuneline.backends.local.chat_encoding import check_rendered, encode_chat
from tuneline.records import ChatRecord

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "Example",
    "OutputSplit",
    "collate",
    "encode_record",
    "loss_sum",
    "pack_examples",
    "split_output_layer",
]

IGNORE_INDEX = -100
_OPEN_ROWS = 64


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


def pack_examples(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Group example indices into rows of at most ``row_length`` tokens, keeping their order."""
    rows: list[list[int]] = []
    room: list[int] = []
    open_from = 0
    for index, length in enumerate(lengths):
        if length > row_length:
            raise ValueError(f"example {index} has {length} tokens, more than the row length {row_length}")
        for row in range(open_from, len(rows)):
            if room[row] >= length:
                rows[row].append(index)
                room[row] -= length
                break
        else:
            rows.append([index])
            room.append(row_length - length)
            # Rows far behind are closed: they rarely have room left, and scanning them is O(n^2).
            open_from = max(open_from, len(rows) - _OPEN_ROWS)
    return rows


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor  # (B, L) for padded batches, (B, 1, L, L) additive for packed rows
    position_ids: torch.Tensor
    tokens: int  # real (non-padding) tokens
    target_tokens: int  # tokens that carry a label

    def to(self, device: torch.device, mask_dtype: torch.dtype) -> Batch:
        mask = self.attention_mask
        if mask.dim() == 4:
            # Additive: 0 where attention is allowed, the dtype's minimum elsewhere.
            mask = torch.zeros(mask.shape, dtype=mask_dtype).masked_fill_(~mask, torch.finfo(mask_dtype).min)
        return Batch(
            self.input_ids.to(device),
            self.labels.to(device),
            mask.to(device),
            self.position_ids.to(device),
            self.tokens,
            self.target_tokens,
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


def collate(rows: Sequence[Sequence[Example]], pad_token_id: int) -> Batch:
    """One micro-batch. A row of several examples is packed (block-diagonal mask); rows of one
    example each are padded. The 4-D packed mask is boolean here (True = may attend) and becomes
    additive in the compute dtype in :meth:`Batch.to`."""
    packed = any(len(row) > 1 for row in rows)
    width = max(sum(len(e) for e in row) for row in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((n, width), dtype=torch.long)
    if packed:
        mask = torch.zeros((n, 1, width, width), dtype=torch.bool)
    else:
        mask = torch.zeros((n, width), dtype=torch.long)
    tokens = targets = 0
    for r, row in enumerate(rows):
        offset = 0
        for example in row:
            length = len(example)
            end = offset + length
            input_ids[r, offset:end] = torch.tensor(example.input_ids)
            labels[r, offset:end] = torch.tensor(example.labels)
            position_ids[r, offset:end] = torch.arange(length)
            if packed:
                mask[r, 0, offset:end, offset:end] = torch.ones(length, length, dtype=torch.bool).tril_()
            else:
                mask[r, offset:end] = 1
            offset = end
            tokens += length
            targets += example.target_tokens
        if packed and offset < width:
            # Padding tokens attend to themselves only: no row of the softmax is empty (NaN-free),
            # and their labels are ignored anyway.
            idx = torch.arange(offset, width)
            mask[r, 0, idx, idx] = True
    return Batch(input_ids, labels, mask, position_ids, tokens, targets)


class OutputSplit(NamedTuple):
    decoder: torch.nn.Module  # token ids -> last hidden states
    head: torch.nn.Module  # last hidden states -> logits


# Model types whose causal-LM head is ``logits = lm_head(hidden_states)`` and nothing more (checked
# in transformers 5.23's modeling files). Not Gemma 2/3 (soft-capping), Granite or Cohere (scaling):
# a near-identity transform of a fresh model's small logits would pass a numeric check alone.
_PLAIN_OUTPUT_LAYER = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "olmo2", "smollm3"}
)


def split_output_layer(model: PreTrainedModel, probe: Batch) -> OutputSplit | None:
    """The model as decoder + output layer, where that is known to give exactly its logits.

    The model type must be one whose head only applies the output layer, and on ``probe`` the
    split must reproduce the logits (custom code under a known type name). Call it in eval mode
    (dropout off), under the autocast the loss will run under.
    """
    if model.config.model_type not in _PLAIN_OUTPUT_LAYER:
        return None
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    if decoder is None or head is None or decoder is model:
        return None
    with torch.no_grad():
        full = model(**probe.model_inputs(), use_cache=False).logits
        split = head(decoder(**probe.model_inputs(), use_cache=False).last_hidden_state)
    if full.shape != split.shape or not torch.allclose(full.float(), split.float(), rtol=1e-4, atol=1e-4):
        return None
    return OutputSplit(decoder, head)


def loss_sum(model: PreTrainedModel, batch: Batch, split: OutputSplit | None) -> torch.Tensor:
    """Summed cross-entropy of the batch's labelled next tokens (the caller divides)."""
    targets = batch.labels[:, 1:]
    if split is None:
        logits = model(**batch.model_inputs(), use_cache=False).logits[:, :-1]
    else:
        hidden = split.decoder(**batch.model_inputs(), use_cache=False).last_hidden_state[:, :-1]
        labelled = targets != IGNORE_INDEX
        logits, targets = split.head(hidden[labelled]), targets[labelled]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
