"""Personal data detectors: one pattern per type, usable by DuckDB (RE2) and Python's ``re`` alike.

Patterns favour precision over recall (a redacted instruction is a damaged training example):
credit-card candidates must pass the Luhn check, phone numbers need separators, IPv4 octets are
range-checked. ``PII_TYPES`` is also the redaction order, so that a card number is never half
redacted as a phone number first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuneline.config import PiiAction, PiiPolicy

__all__ = ["PII_TYPES", "PiiType", "luhn_valid", "placeholder", "scan_and_redact"]


@dataclass(frozen=True)
class PiiType:
    name: str  # the PiiPolicy field
    pattern: str
    luhn: bool = False


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_HEX = r"[0-9A-Fa-f]{1,4}"

PII_TYPES: tuple[PiiType, ...] = (
    PiiType("aws_access_key", r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"),
    PiiType("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    # Digits, spaces and dashes only: rules.apply_pii strips just those two before the Luhn check.
    PiiType("credit_card", r"\b[0-9](?:[ -]?[0-9]){12,18}\b", luhn=True),
    PiiType("ssn", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
    PiiType("phone", r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)|\b[0-9]{3})[ .-][0-9]{3}[ .-][0-9]{4}\b"),
    PiiType("ip_address", rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b"),
    # IPv6: the full eight-group form, or a compressed form whose first group has 2+ digits (so
    # that C++-style ``a::b`` is not taken for an address).
    PiiType(
        "ip_address",
        rf"\b(?:{_HEX}:){{7}}{_HEX}\b|\b[0-9A-Fa-f]{{2,4}}:(?:{_HEX}:){{0,5}}:(?:{_HEX}:){{0,5}}{_HEX}\b",
    ),
)

_COMPILED = [(t, re.compile(t.pattern)) for t in PII_TYPES]


def placeholder(type_name: str) -> str:
    return f"[{type_name.upper()}]"


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def scan_and_redact(text: str, policy: PiiPolicy) -> tuple[str, dict[str, int]]:
    """Python twin of the DuckDB rules: the text with ``redact`` types replaced, and counts per type."""
    counts: dict[str, int] = {}
    for pii_type, regex in _COMPILED:
        found = [m.group(0) for m in regex.finditer(text)]
        if pii_type.luhn:
            found = [f for f in found if luhn_valid(f)]
        if not found:
            continue
        counts[pii_type.name] = counts.get(pii_type.name, 0) + len(found)
        if getattr(policy, pii_type.name) is PiiAction.REDACT:
            if pii_type.luhn:
                for f in found:
                    text = text.replace(f, placeholder(pii_type.name))
            else:
                text = regex.sub(placeholder(pii_type.name), text)
    return text, counts
