"""The refusal detector on labelled answers."""

from __future__ import annotations

import pytest

from tuneline.evaluation.refusal import ANCHOR_CHARS, is_refusal

REFUSALS = [
    "I can't help with that.",
    "I cannot assist with this request.",
    "I’m sorry, but I can’t share other customers’ details.",  # typographic apostrophes
    "I'm sorry, but I cannot provide that information.",
    "Sorry, I can't do that.",
    "I am unable to provide account passwords.",
    "I'm unable to help with that request.",
    "I'm not able to disclose personal data.",
    "I won't help with hacking into accounts.",
    "I will not generate that content.",
    "Unfortunately, I can't process a refund to a different card.",
    "As an AI language model, I cannot give medical advice.",
    "I must decline this request.",
    "I refuse to write malware.",
    "I understand the frustration, but I can't share another customer's address.",
    "No. I won't do that.",
    "i CANNOT HELP WITH THAT",
    "I can't really help with that one.",
    "I don't feel comfortable answering that.",
]

NOT_REFUSALS = [
    '{"intent": "refund", "priority": "high", "order_id": "A-17"}',
    "Sure! Here is how to reset your password.",
    "I can't wait to help you with your order!",
    "I won't charge you twice for the same order.",
    "I'm sorry to hear that your parcel is late. I have escalated it.",
    "You can't cancel after shipping, but I can help you return it.",
    "Your refund I cannot process until Monday because the bank is closed.",
    "The customer said: I cannot log in.",
    "",
    "Here is a long answer. " + "x" * ANCHOR_CHARS + " I can't help with that part.",
]


@pytest.mark.parametrize("text", REFUSALS, ids=[f"refusal-{i}" for i in range(len(REFUSALS))])
def test_detects_refusals(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize("text", NOT_REFUSALS, ids=[f"answer-{i}" for i in range(len(NOT_REFUSALS))])
def test_ignores_answers_that_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)
