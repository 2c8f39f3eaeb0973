"""PII detection and redaction per type, through the DuckDB rules and their Python twin."""

from __future__ import annotations

import json

import pytest

from tuneline.config import DataConfig, PiiPolicy, Target
from tuneline.data.pii import luhn_valid, scan_and_redact
from tuneline.data.prepare import build_dataset

CASES = [
    ("email", "write to jane.doe+x@mail.example.co.uk today", "write to [EMAIL] today"),
    ("phone", "call (415) 555-0137 or +1 415-555-0199", "call [PHONE] or [PHONE]"),
    ("credit_card", "card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok"),
    ("ssn", "ssn 123-45-6789.", "ssn [SSN]."),
    (
        "ip_address",
        "from 192.168.10.254 and 2001:db8:85a3::8a2e:370:7334",
        "from [IP_ADDRESS] and [IP_ADDRESS]",
    ),
    ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE here", "key [AWS_ACCESS_KEY] here"),
]
REDACT_ALL = PiiPolicy(aws_access_key="redact")


@pytest.mark.parametrize(("kind", "text", "redacted"), CASES, ids=[c[0] for c in CASES])
def test_each_type_is_found_and_redacted(write_lines, tmp_path, kind, text, redacted):
    record = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "noted"}]}
    built = build_dataset(
        DataConfig(
            source=str(write_lines([record])), pii=REDACT_ALL, split={"train": 1, "validation": 0, "test": 0}
        ),
        Target.LOCAL,
        tmp_path / "w",
    )
    expected_count = redacted.count(f"[{kind.upper()}]")
    assert built.summary.pii == {kind: expected_count}
    (line,) = (tmp_path / "w" / "out" / "train.jsonl").read_text().splitlines()
    assert json.loads(line)["messages"][0]["content"] == redacted
    assert scan_and_redact(text, REDACT_ALL) == (redacted, {kind: expected_count})


@pytest.mark.parametrize(
    "text",
    ["order 4111 1111 1111 1112", "version 10.0.300.1", "std::vector<int>", "call 5550137", "x@y"],
    ids=["luhn_fails", "not_an_ip", "cpp_scope", "no_separators", "no_domain"],
)
def test_lookalikes_are_left_alone(write_lines, text):
    record = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}
    from tuneline.data.prepare import validate

    assert validate(DataConfig(source=str(write_lines([record]))), Target.LOCAL).pii == {}
    assert scan_and_redact(text, REDACT_ALL) == (text, {})


def test_policy_reject_and_allow(write_lines, tmp_path):
    lines = [
        {
            "messages": [
                {"role": "user", "content": "mail a@b.example.com"},
                {"role": "assistant", "content": "1"},
            ]
        },
        {"messages": [{"role": "user", "content": "ip 10.1.2.3"}, {"role": "assistant", "content": "2"}]},
    ]
    policy = PiiPolicy(email="reject", ip_address="allow")
    built = build_dataset(
        DataConfig(
            source=str(write_lines(lines)), pii=policy, split={"train": 1, "validation": 0, "test": 0}
        ),
        Target.LOCAL,
        tmp_path / "w",
    )
    assert built.summary.errors == {"pii": 1} and built.summary.pii == {"email": 1, "ip_address": 1}
    (kept,) = (tmp_path / "w" / "out" / "train.jsonl").read_text().splitlines()
    assert "ip 10.1.2.3" in kept


def test_luhn():
    assert luhn_valid("4111-1111-1111-1111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112") and not luhn_valid("1234")
