"""Token counting: the documented estimate and a real (in-memory) tokenizer."""

from __future__ import annotations

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from tuneline.config import DataConfig, Target
from tuneline.data.prepare import validate
from tuneline.data.tokens import CharEstimateCounter, HFTokenCounter


def test_char_estimate_rounds_up():
    assert CharEstimateCounter(3).count(["", "a", "abc", "abcd"]) == [0, 1, 1, 2]


def test_hf_counter_feeds_prepare(write_lines):
    tok = Tokenizer(WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    counter = HFTokenCounter(tok, name="wordlevel")
    assert counter.count(["hi there you", "hi"]) == [3, 1]
    record = {
        "system": "be kind",
        "messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}],
    }
    summary = validate(DataConfig(source=str(write_lines([record]))), Target.LOCAL, token_counter=counter)
    assert summary.tokens == 2 + 2 + 1


def test_near_duplicates_are_removed_when_configured(write_lines):
    base = "please summarise the quarterly report for the finance team and list the three main risks "
    lines = [
        {"messages": [{"role": "user", "content": base + "today"}, {"role": "assistant", "content": "ok"}]},
        {"messages": [{"role": "user", "content": base + "today!"}, {"role": "assistant", "content": "ok"}]},
        {
            "messages": [
                {"role": "user", "content": "something else entirely"},
                {"role": "assistant", "content": "ok"},
            ]
        },
    ]
    path = write_lines(lines)
    assert validate(DataConfig(source=str(path)), Target.LOCAL).duplicates == 0
    near = validate(DataConfig(source=str(path), dedupe={"near_duplicate_threshold": 0.8}), Target.LOCAL)
    assert (near.duplicates, near.accepted) == (1, 2)


def test_exact_duplicates_after_normalisation(write_lines):
    a = {"messages": [{"role": "user", "content": "Hello  world"}, {"role": "assistant", "content": "x"}]}
    b = {"messages": [{"role": "user", "content": "hello world "}, {"role": "assistant", "content": "x"}]}
    path = write_lines([a, b])
    assert validate(DataConfig(source=str(path)), Target.LOCAL).duplicates == 0
    assert (
        validate(DataConfig(source=str(path), dedupe={"case_insensitive": True}), Target.LOCAL).duplicates
        == 1
    )
