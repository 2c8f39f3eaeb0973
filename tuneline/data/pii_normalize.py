"""Text as the PII detectors see it, with every character traced back to the original.

Personal data hidden with Unicode tricks must still be found: fullwidth digits (``４１５``),
no-break or ideographic spaces, en-dashes or minus signs as separators, zero-width or bidi
control characters inside a number, Cyrillic or Greek letters that look like Latin ones in an
e-mail or a key. :func:`normalize_for_detection` builds the text the detectors match on:

- format characters (Unicode category ``Cf``: zero-width spaces and joiners, bidi controls,
  soft hyphens, the BOM) and variation selectors are removed;
- every decimal digit of any script becomes its ASCII digit, every dash (``Pd``) ``-`` and every
  space separator (``Zs``) a plain space;
- the rest goes through NFKC (fullwidth forms, ligatures, superscripts), then each remaining
  non-ASCII character that Unicode's confusables list (via ``confusable_homoglyphs``) says looks
  like one printable ASCII character becomes that character.

ASCII is never changed, so ASCII text is its own normalised form (the common case costs
nothing). Normalisation works character by character, so each character of the result comes
from exactly one character of the input; :meth:`NormalizedText.original_span` maps a match back,
and the redaction replaces the original characters, hidden ones included.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache

from confusable_homoglyphs.confusables import confusables_data

__all__ = ["NormalizedText", "normalize_for_detection"]

_VARIATION_SELECTORS = frozenset(range(0xFE00, 0xFE10)) | frozenset(range(0xE0100, 0xE01F0))


@cache
def _ascii_lookalikes() -> dict[str, str]:
    """Non-ASCII character -> the printable ASCII character it is confusable with (first listed)."""
    table: dict[str, str] = {}
    for char, entries in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for entry in entries:
            glyph = entry["c"]
            if len(glyph) == 1 and glyph.isascii() and glyph.isprintable() and not glyph.isspace():
                table[char] = glyph
                break
    return table


@cache
def _fold_char(char: str) -> str:
    """What one non-ASCII character becomes for detection ('' = removed)."""
    code = ord(char)
    category = unicodedata.category(char)
    if category == "Cf" or code in _VARIATION_SELECTORS:
        return ""
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return str(digit)
    if category == "Pd":
        return "-"
    if category == "Zs":
        return " "
    out = []
    for c in unicodedata.normalize("NFKC", char):
        if c.isascii():
            out.append(c)
        elif unicodedata.decimal(c, None) is not None:
            out.append(str(unicodedata.decimal(c)))
        elif unicodedata.category(c) == "Zs":
            out.append(" ")
        else:
            out.append(_ascii_lookalikes().get(c, c))
    return "".join(out)


@dataclass(frozen=True)
class NormalizedText:
    """``text`` for the detectors; ``origin[i]`` is the index in ``original`` of ``text[i]``."""

    original: str
    text: str
    origin: tuple[int, ...] | None  # None: text is original (pure ASCII)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original characters behind ``text[start:end]`` (``end > start``), including any
        removed characters between them."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def normalize_for_detection(text: str) -> NormalizedText:
    if text.isascii():
        return NormalizedText(text, text, None)
    out: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        folded = char if char.isascii() else _fold_char(char)
        out.append(folded)
        origin.extend([i] * len(folded))
    return NormalizedText(text, "".join(out), tuple(origin))
