"""Every error code from a minimal bad record; the real datasets pass; counts always reconcile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneline.config import DataConfig, Target
from tuneline.data.codes import ErrorCode
from tuneline.data.prepare import build_dataset, validate
from tuneline.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _msgs(*pairs: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


CASES = [
    # (id, bad line, code, field, target)
    (
        "not_utf8",
        b'{"messages": [{"role": "user", "content": "\xff"}]}',
        ErrorCode.NOT_UTF8,
        None,
        Target.LOCAL,
    ),
    ("invalid_json", '{"messages": [', ErrorCode.INVALID_JSON, None, Target.LOCAL),
    ("not_an_object", "[1, 2]", ErrorCode.UNKNOWN_FORMAT, None, Target.LOCAL),
    ("missing_messages", {"system": "s"}, ErrorCode.MISSING_MESSAGES, "messages", Target.LOCAL),
    ("empty_messages", {"messages": []}, ErrorCode.EMPTY_MESSAGES, "messages", Target.LOCAL),
    ("messages_not_list", {"messages": "hi"}, ErrorCode.WRONG_TYPE, "messages", Target.LOCAL),
    (
        "content_not_string",
        {"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "a"}]},
        ErrorCode.WRONG_TYPE,
        "messages[0].content",
        Target.LOCAL,
    ),
    (
        "unknown_role",
        _msgs(("user", "q"), ("bot", "x"), ("assistant", "a")),
        ErrorCode.UNKNOWN_ROLE,
        "messages[1].role",
        Target.LOCAL,
    ),
    (
        "roles_not_alternating",
        _msgs(("user", "q"), ("user", "q2"), ("assistant", "a")),
        ErrorCode.ROLES_NOT_ALTERNATING,
        "messages[1].role",
        Target.LOCAL,
    ),
    (
        "first_not_user",
        _msgs(("assistant", "a"), ("user", "q"), ("assistant", "a")),
        ErrorCode.FIRST_NOT_USER,
        "messages[0].role",
        Target.LOCAL,
    ),
    (
        "last_not_assistant",
        _msgs(("user", "q"), ("assistant", "a"), ("user", "q")),
        ErrorCode.LAST_NOT_ASSISTANT,
        "messages[2].role",
        Target.LOCAL,
    ),
    (
        "empty_content",
        _msgs(("user", "  "), ("assistant", "a")),
        ErrorCode.EMPTY_CONTENT,
        "messages[0].content",
        Target.LOCAL,
    ),
    ("unexpected_key", {**GOOD, "id": 7}, ErrorCode.UNEXPECTED_KEY, "id", Target.LOCAL),
    ("system_not_string", {"system": 5, **GOOD}, ErrorCode.WRONG_TYPE, "system", Target.LOCAL),
    (
        "unexpected_message_key",
        {"messages": [{"role": "user", "content": "q", "tags": "x"}, GOOD["messages"][1]]},
        ErrorCode.UNEXPECTED_KEY,
        "messages[0].tags",
        Target.LOCAL,
    ),
    (
        "duplicate_key",
        '{"messages": [{"role": "user", "content": "shown"}, {"role": "assistant", "content": "a"}], '
        '"messages": [{"role": "user", "content": "trained"}, {"role": "assistant", "content": "b"}]}',
        ErrorCode.DUPLICATE_KEY,
        "messages",
        Target.LOCAL,
    ),
    (
        "duplicate_message_key",
        '{"messages": [{"role": "user", "content": "q", "content": "r"}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.DUPLICATE_KEY,
        "messages[0].content",
        Target.LOCAL,
    ),
    (
        "reserved_string",
        _msgs(("user", "a\nHuman: b"), ("assistant", "a")),
        ErrorCode.RESERVED_STRING,
        "messages[0].content",
        Target.BEDROCK_CLAUDE_HAIKU,
    ),
    (
        "too_many_tokens",
        _msgs(("user", "x" * 96_003), ("assistant", "a")),
        ErrorCode.TOO_MANY_TOKENS,
        None,
        Target.BEDROCK_CLAUDE_HAIKU,
    ),
    (
        "pii_reject",
        _msgs(("user", "my key is AKIAIOSFODNN7EXAMPLE"), ("assistant", "a")),
        ErrorCode.PII,
        "messages[0].content",
        Target.LOCAL,
    ),
]


@pytest.mark.parametrize(
    ("bad", "code", "field", "target"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_error_code_names_line_field_and_fix(write_lines, chat, tmp_path, bad, code, field, target):
    # Enough good records for Bedrock's minimum, all in train (no undersized validation split).
    path = write_lines([*(chat(i) for i in range(40)), bad])
    # Extra keys are dropped by default (counted in dropped_keys); "reject" makes them an error.
    extra = "reject" if code is ErrorCode.UNEXPECTED_KEY else "drop"
    config = DataConfig(source=str(path), split={"train": 1, "validation": 0, "test": 0}, extra_keys=extra)
    built = build_dataset(config, target, tmp_path / "work")

    s = built.summary
    assert s.problems == []
    assert s.errors == {code.value: 1}
    assert (s.total, s.rejected, s.accepted) == (41, 1, 40)
    rejected = [
        json.loads(x) for x in (tmp_path / "work" / "out" / "rejected.jsonl").read_text().splitlines()
    ]
    assert len(rejected) == 1 and rejected[0]["line"] == 41 and rejected[0]["file"] == path.name
    (error,) = rejected[0]["errors"]
    assert error["code"] == code.value and error["field"] == field
    assert len(error["message"]) > 20  # says what is wrong and what to do


# Lines that json_transform reads as a plain chat record (it turns objects, lists and numbers
# into strings and ignores extra keys), but whose shape is not plain: each must be rejected
# with the general path's reason.
NEAR_PLAIN = [
    (
        "content_object",
        '{"messages": [{"role": "user", "content": {"q": "x"}}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.WRONG_TYPE,
        "messages[0].content",
    ),
    (
        "content_empty_list",
        '{"messages": [{"role": "user", "content": []}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.EMPTY_CONTENT,
        "messages[0].content",
    ),
    (
        "system_object",
        '{"system": {}, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.WRONG_TYPE,
        "system",
    ),
    (
        "system_list",
        '{"system": ["s"], "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.WRONG_TYPE,
        "system",
    ),
    (
        "extra_key_holding_list",
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "x": []}',
        ErrorCode.UNEXPECTED_KEY,
        "x",
    ),
    (
        "extra_key_in_place_of_system",
        '{"x": "s", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.UNEXPECTED_KEY,
        "x",
    ),
    (
        "role_number",
        '{"messages": [{"role": 1, "content": "q"}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.UNKNOWN_ROLE,
        "messages[0].role",
    ),
    (
        "message_key_swapped_for_another",
        '{"messages": [{"role": "user", "text": "q", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        ErrorCode.UNEXPECTED_KEY,
        "messages[0].text",
    ),
]


@pytest.mark.parametrize(
    ("line", "code", "field"), [c[1:] for c in NEAR_PLAIN], ids=[c[0] for c in NEAR_PLAIN]
)
def test_lines_that_only_look_plain_are_rejected_with_their_reason(
    write_lines, chat, tmp_path, line, code, field
):
    path = write_lines([chat(0), line])
    extra = "reject" if code is ErrorCode.UNEXPECTED_KEY else "drop"
    built = build_dataset(DataConfig(source=str(path), extra_keys=extra), Target.LOCAL, tmp_path / "work", write=False)
    assert (built.summary.accepted, built.summary.rejected) == (1, 1)
    assert code.value in built.summary.errors
    (example,) = built.profile["error_examples"][code.value]
    assert (example["line"], example["field"]) == (2, field)


def test_a_file_without_any_known_format_is_unknown_format(write_lines):
    summary = validate(DataConfig(source=str(write_lines([{"foo": 1}, {"bar": 2}]))), Target.LOCAL)
    assert summary.errors == {"unknown_format": 2}
    assert summary.problems == ["no record passed the checks (2 read): the errors list each code with examples"]


def test_blank_lines_are_not_records(write_lines):
    summary = validate(DataConfig(source=str(write_lines(["", GOOD, "   ", ""]))), Target.LOCAL)
    assert (summary.total, summary.accepted) == (1, 1)


@pytest.mark.parametrize(
    ("n", "split", "problem"),
    [
        (10, {}, "too_few_records: the train split"),
        (200, {"train": 0.5, "validation": 0.5, "test": 0}, "too_many_records"),
    ],
    ids=["too_few", "too_many"],
)
def test_file_level_limits_are_reported(write_lines, chat, n, split, problem, monkeypatch):
    from tuneline.data import targets

    if problem == "too_many_records":
        limits = targets.limits_for(Target.BEDROCK_CLAUDE_HAIKU).model_copy(
            update={"max_validation_records": 50}
        )
        monkeypatch.setitem(targets._LIMITS, Target.BEDROCK_CLAUDE_HAIKU, limits)
    config = DataConfig(
        source=str(write_lines([chat(i) for i in range(n)])), **({"split": split} if split else {})
    )
    summary = validate(config, Target.BEDROCK_CLAUDE_HAIKU)
    assert any(p.startswith(problem) for p in summary.problems), summary.problems


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"the shared datasets folder {SHARED_DATA} is absent")
@pytest.mark.parametrize("name", ["json_mode_dataset.jsonl", "tooluse_train.jsonl", "tooluse_test.jsonl"])
@pytest.mark.parametrize("target", [Target.LOCAL, Target.BEDROCK_CLAUDE_HAIKU, Target.BEDROCK_NOVA])
def test_real_datasets_pass_unchanged(name, target):
    summary = validate(DataConfig(source=str(SHARED_DATA / name)), target)
    assert summary.rejected == 0 and summary.errors == {}
    assert summary.accepted + summary.duplicates == summary.total > 100
    assert summary.formats == {name: "bedrock"}


def test_missing_source_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no input files"):
        validate(DataConfig(source=str(tmp_path / "nope-*.jsonl")), Target.LOCAL)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["role", "content", "messages", "system", "text", "x"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
_lines = st.one_of(
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ")),
    st.text(max_size=30).map(lambda t: t.replace("\n", " ").encode("utf-8")),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.just(json.dumps(GOOD).encode()),
    st.builds(
        lambda roles, texts: json.dumps(
            {"messages": [{"role": r, "content": t} for r, t in zip(roles, texts, strict=False)]}
        ).encode(),
        st.lists(st.sampled_from(["user", "assistant", "system", "bot"]), max_size=4),
        st.lists(st.text(max_size=6), min_size=4, max_size=4),
    ),
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_lines, max_size=12))
def test_random_lines_never_crash_and_counts_reconcile(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("prop") / "in.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    summary = validate(DataConfig(source=str(path)), Target.LOCAL)
    # A byte-order mark opening the file is not part of its first line (which may then be blank).
    content = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    assert summary.total == sum(1 for line in content.split(b"\n") if line.strip(b" \t\r"))
    assert summary.total == summary.accepted + summary.rejected + summary.duplicates + summary.filtered
    assert summary.accepted == sum(summary.splits.values())
    assert summary.rejected <= sum(summary.errors.values())


def test_a_message_without_a_role_is_rejected(write_lines, chat):
    no_role = {"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}
    null_role = {"messages": [{"role": None, "content": "q"}, {"role": "assistant", "content": "a"}]}
    built_errors = validate(
        DataConfig(source=str(write_lines([chat(0), no_role, null_role]))), Target.LOCAL
    ).errors
    assert built_errors["unknown_role"] == 2


_NOVA = (
    '{{"schemaVersion": "bedrock-conversation-2024", "system": [{system}], "messages": '
    '[{{"role": "user", "content": [{user}]}}, {{"role": "assistant", "content": [{{"text": "a"}}]}}]}}'
)


@pytest.mark.parametrize(
    ("system", "user", "field"),
    [
        ('{"text": "s", "text": "t"}', '{"text": "q"}', "system[0].text"),
        ('{"text": "s"}', '{"text": "q"}, {"text": "r", "text": "r2"}', "messages[0].content[1].text"),
    ],
    ids=["system_block", "content_block"],
)
def test_duplicate_keys_in_nova_text_blocks_are_rejected(write_lines, tmp_path, system, user, field):
    path = write_lines(
        [_NOVA.format(system='{"text": "s"}', user='{"text": "q"}'), _NOVA.format(system=system, user=user)]
    )
    built = build_dataset(
        DataConfig(source=str(path), format="nova"), Target.LOCAL, tmp_path / "work", write=False
    )
    assert built.summary.errors == {"duplicate_key": 1}
    assert built.summary.accepted == 1
    (example,) = built.profile["error_examples"]["duplicate_key"]
    assert (example["line"], example["field"]) == (2, field)
    assert "ambiguous" in example["message"] and 'keep one "text"' in example["message"]


def _reverse_keys(value):
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reverse_keys(v) for k, v in reversed(value.items())}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


def _outputs(record_lines: list[str], workdir: Path) -> tuple[dict, dict[str, bytes]]:
    path = workdir / "in.jsonl"
    path.write_text("".join(line + "\n" for line in record_lines), encoding="utf-8")
    built = build_dataset(DataConfig(source=str(path)), Target.LOCAL, workdir / "work")
    files = {}
    if built.files_dir is not None:
        files = {
            p.name: p.read_bytes() for p in built.files_dir.glob("*.jsonl") if p.name != "rejected.jsonl"
        }
    return built.summary.model_dump(), files


def _assert_both_paths_agree(records: list[dict], tmp_path_factory) -> None:
    # Plain chat records (role before content) are parsed once; with the keys reversed the same
    # conversations take the general, per-part rules. Both must give the same result.
    plain = _outputs([json.dumps(r) for r in records], tmp_path_factory.mktemp("plain"))
    general = _outputs([json.dumps(_reverse_keys(r)) for r in records], tmp_path_factory.mktemp("general"))
    assert plain == general


def test_plain_records_and_the_general_path_agree(tmp_path_factory, chat):
    records = [
        chat(0),
        chat(1, system="Be brief.", turns=2),
        {
            "system": "",
            "messages": [{"role": "user", "content": " q\u00a0"}, {"role": "assistant", "content": "a"}],
        },
        {
            "messages": [
                {"role": "user", "content": "mail x@example.com"},
                {"role": "assistant", "content": "a\n\tb"},
            ]
        },
        {"messages": [{"role": "user", "content": "\u3000"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]},
        chat(0),
    ]
    _assert_both_paths_agree(records, tmp_path_factory)


_texts = st.one_of(st.text(max_size=10), st.text(alphabet=" \t\n\u00a0\u3000aZ1@.-:é", max_size=12))
_records = st.builds(
    lambda system, turns: (
        ({"system": system} if system is not None else {})
        | {"messages": [{"role": r, "content": c} for r, c in turns]}
    ),
    st.none() | _texts,
    st.lists(st.tuples(st.sampled_from(["user", "assistant"]), _texts), min_size=1, max_size=4),
)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_records, min_size=1, max_size=8))
def test_random_plain_records_and_the_general_path_agree(tmp_path_factory, records):
    _assert_both_paths_agree(records, tmp_path_factory)


def test_extra_keys_are_dropped_and_counted_by_default_or_kept(write_lines, chat, tmp_path):
    line = '{"id": 7, "messages": [{"role": "user", "content": "q", "lang": "en"}, {"role": "assistant", "content": "a"}]}'
    path = write_lines([chat(0), line])
    summary = validate(DataConfig(source=str(path)), Target.LOCAL)
    assert (summary.accepted, summary.rejected) == (2, 0)
    assert summary.dropped_keys == {"id": 1, "messages[].lang": 1}
    kept = validate(DataConfig(source=str(path), extra_keys="keep"), Target.LOCAL)
    # A message has no metadata: its extra keys are dropped (and counted) under "keep" too.
    assert kept.accepted == 2 and kept.dropped_keys == {"messages[].lang": 1}


def test_a_conversation_without_its_answer_gets_one_message_from_both_rule_sets(tmp_path):
    """tuneline.records (what prepare reports today) and rules.py's SQL turn-order check (which the
    records' canonical lines are re-checked with) say the same, naming data.kind: prompt."""
    import duckdb

    from tuneline.data import rules

    expected = (
        'the conversation ends with "user": the last turn must be "assistant" (add the assistant answer it '
        "lacks; prompts a teacher model answers, for distillation, are read with data.kind: prompt)"
    )
    unanswered = _msgs(("user", "q"), ("assistant", "a"), ("user", "q2"))
    config = DataConfig(source=str(tmp_path / "in.jsonl"), split={"train": 1, "validation": 0, "test": 0})
    (tmp_path / "in.jsonl").write_text(json.dumps(unanswered) + "\n")
    summary = build_dataset(config, Target.LOCAL, tmp_path / "work").summary
    assert summary.examples["last_not_assistant"][0]["message"] == expected
    con = duckdb.connect()
    con.execute("CREATE TABLE errs (rid BIGINT, code VARCHAR, field VARCHAR, message VARCHAR)")
    con.execute(
        "CREATE TABLE doc AS SELECT 1::BIGINT AS rid, 'OBJECT' AS jtype, json_keys(t) AS keys, "
        "json_extract(t, ['$.messages', '$.system', '$.schemaVersion']) AS p, 'bedrock' AS fmt, false AS strict "
        "FROM (SELECT ?::VARCHAR AS t)",
        [json.dumps(unanswered)],
    )
    rules._check_messages(con)
    assert con.execute("SELECT code, field, message FROM errs").fetchall() == [
        ("last_not_assistant", "messages[2].role", expected)
    ]
