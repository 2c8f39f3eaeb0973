"""The record rules, as DuckDB SQL over the ``raw`` table (see ``sources.py``).

Plain, valid chat records (nearly all lines of a typical file) are parsed once, straight into
``conversations``; every other line takes the general path, where each step materialises one
table so that every rule reads parsed JSON once:

``doc``    one row per readable JSON line: its top-level parts and detected format
``msg``    one row per message of a chat/Nova record, with its role, text and type checks
``texts``  the texts of every structurally valid record: (rid, idx, role, text), idx 0 = system

and ends in the same two tables:

``conversations``  (rid, file_id, system, messages, shift, payload, paths): every structurally
                   valid record; ``payload`` and ``paths`` are set for the records that are more
                   than a text chat (see ``convert.py``), NULL for the others
``errs``           (rid, code, field, message): every problem found; a record with any row is rejected

Python takes over only where SQL cannot express a rule: token counts from a real tokenizer and
MinHash near-duplicates (see ``dedupe.py``).
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from tuneline.config import DataConfig, PiiAction, PiiPolicy, Target
from tuneline.data import pii
from tuneline.data.codes import ErrorCode as E
from tuneline.data.convert import convert_slow_rows, needs_conversion_only, payload_json
from tuneline.data.targets import TargetLimits, limits_for
from tuneline.records import RecordFormat, record_from_dict, replace_texts

__all__ = ["apply_pii", "build_conversations", "check_records", "check_structure", "conversation_texts"]

_CHAT = (RecordFormat.BEDROCK.value, RecordFormat.OPENAI.value)
_NOVA_BLOCK = 'a list of {"text": ...} blocks'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_structure(
    con: duckdb.DuckDBPyConnection, config: DataConfig, limits: TargetLimits | None = None
) -> None:
    """Parse, detect formats, check shape and roles; build ``conversations``, ``doc``, ``msg``, ``errs``.

    Most lines of a real file are plain, valid chat records. Those are parsed exactly once,
    straight into ``conversations`` (see :func:`_parse_plain_chat`); only the remaining lines go
    through the general per-part rules below, which name every problem.
    """
    cols = config.columns
    con.execute("CREATE TABLE errs AS SELECT * FROM load_errs")
    _parse_plain_chat(con, skip=needs_conversion_only(config))
    # A row the reader could not read (see sources.py) holds the row as written: never a record.
    con.execute("DELETE FROM conversations WHERE rid IN (SELECT rid FROM load_errs)")
    # Materialised: it is small, and read twice below.
    con.execute(
        "CREATE TEMP TABLE slow_raw AS SELECT * FROM raw ANTI JOIN conversations USING (rid) "
        "ANTI JOIN load_errs USING (rid)"
    )
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.NOT_UTF8}', NULL,
               'the line is not valid UTF-8: re-save the file as UTF-8'
        FROM slow_raw WHERE NOT utf8
        UNION ALL
        SELECT rid, '{E.INVALID_JSON}', NULL,
               'the line is not one valid JSON object: check quotes, commas and brackets (one record per line)'
        FROM slow_raw WHERE utf8 AND NOT json_valid(text)
        """
    )
    # Every other JSON object: detected and converted per record, in Python (see convert.py);
    # what passes is rewritten as a canonical chat line, which the general rules below re-check.
    convert_slow_rows(con, config, limits if limits is not None else limits_for(config.target or Target.LOCAL))
    config = config.model_copy(update={"format": "auto"})
    sys_path = f'$."{cols.system}"' if cols.system else "$.__tuneline_no_system_column__"
    doc1_sql = f"""
        SELECT *, CASE
            WHEN jtype <> 'OBJECT' THEN NULL
            WHEN p[3] IS NOT NULL OR json_type(p[2]) = 'ARRAY'
                 OR json_type(json_extract(p[1], '$[0].content')) = 'ARRAY' THEN 'nova'
            WHEN p[1] IS NOT NULL AND json_type(p[1]) = 'ARRAY'
                 AND list_contains(json_extract_string(p[1], '$[*].role'), 'system') THEN 'openai'
            WHEN p[1] IS NOT NULL THEN 'bedrock'
            WHEN p[4] IS NOT NULL OR p[5] IS NOT NULL THEN 'prompt-completion'
        END AS kind
        FROM (
            SELECT rid, file_id, json_type(text) AS jtype,
                   CASE WHEN json_type(text) = 'OBJECT' THEN json_keys(text) END AS keys,
                   json_extract(text, ['$.messages', '$.system', '$.schemaVersion',
                                       {_lit(f'$."{cols.prompt}"')}, {_lit(f'$."{cols.completion}"')},
                                       {_lit(sys_path)}]) AS p
            FROM {{source}} WHERE utf8 AND json_valid(text)
        )
    """
    con.execute("CREATE TABLE doc1 AS " + doc1_sql.replace("{source}", "slow_raw"))
    if config.format == "auto":
        # One format per file: the most common record shape (ties broken by name, so stable);
        # records of another shape in that file then fail that format's rules with a reason.
        # A plain chat record is of the 'bedrock' kind.
        con.execute(
            """
            CREATE TABLE file_fmt AS
            WITH kinds AS (
                SELECT file_id, kind FROM doc1 UNION ALL SELECT file_id, 'bedrock' FROM conversations
            ),
            c AS (
                SELECT file_id, CASE WHEN kind IN ('bedrock', 'openai') THEN 'chat' ELSE kind END AS fam,
                       count(*) AS n, bool_or(kind = 'openai') AS has_openai
                FROM kinds WHERE kind IS NOT NULL GROUP BY ALL
            )
            SELECT file_id,
                   CASE WHEN fam = 'chat' THEN (CASE WHEN bool_or(has_openai) THEN 'openai' ELSE 'bedrock' END)
                        ELSE fam END AS fmt,
                   false AS strict
            FROM (SELECT file_id, first(fam ORDER BY n DESC, fam) AS fam, bool_or(has_openai) AS has_openai
                  FROM c GROUP BY file_id)
            GROUP BY file_id, fam
            """
        )
    else:
        con.execute(
            "CREATE TABLE file_fmt AS SELECT file_id, ? AS fmt, true AS strict FROM files",
            [str(config.format)],
        )
    # A plain chat record passes every rule of the chat formats, but not those of another format:
    # in a file of another format it takes the general path, which says what is wrong with it.
    con.execute(
        f"""
        CREATE TABLE demoted AS
        SELECT rid FROM conversations JOIN file_fmt USING (file_id) WHERE fmt NOT IN ({", ".join(_lit(f) for f in _CHAT)})
          AND payload IS NULL
        """
    )
    if con.execute("SELECT count(*) FROM demoted").fetchone()[0]:
        con.execute("DELETE FROM conversations WHERE rid IN (SELECT rid FROM demoted)")
        con.execute(
            "INSERT INTO doc1 "
            + doc1_sql.replace("{source}", "(SELECT * FROM raw SEMI JOIN demoted USING (rid))")
        )
    con.execute("DROP TABLE demoted")
    con.execute(
        """
        CREATE TABLE doc AS
        SELECT d.rid, d.jtype, d.keys, d.p, f.fmt, coalesce(f.strict, false) AS strict
        FROM doc1 d LEFT JOIN file_fmt f USING (file_id)
        """
    )
    con.execute("DROP TABLE doc1")
    con.execute("DROP TABLE slow_raw")

    allowed = {
        "bedrock": ["system", "messages"],
        "openai": ["system", "messages"],
        "nova": ["schemaVersion", "system", "messages"],
        "prompt-completion": [c for c in (cols.prompt, cols.completion, cols.system) if c],
    }
    allowed_sql = "MAP {" + ", ".join(f"{_lit(k)}: {[*v]!r}" for k, v in allowed.items()) + "}"
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.UNKNOWN_FORMAT}', NULL,
               'the line is JSON but not an object: each line must be one record such as {{"messages": [...]}}'
        FROM doc WHERE jtype <> 'OBJECT'
        UNION ALL
        SELECT rid, '{E.UNKNOWN_FORMAT}', NULL,
               'no known record format in this file (Bedrock/OpenAI chat, Nova, prompt/completion): '
               || 'give records a "messages" list, or set data.columns for prompt/completion data'
        FROM doc WHERE jtype = 'OBJECT' AND fmt IS NULL
        UNION ALL
        SELECT rid, '{E.UNEXPECTED_KEY}', k,
               format('key "{{}}" is not allowed in {{}} records (allowed: {{}}): remove it', k, fmt,
                      array_to_string({allowed_sql}[fmt], ', '))
        FROM (SELECT rid, fmt, unnest(keys) AS k FROM doc WHERE jtype = 'OBJECT' AND fmt IS NOT NULL)
        WHERE NOT list_contains({allowed_sql}[fmt], k)
        """
    )
    _check_messages(con)
    _check_prompt_completion(con)
    _check_duplicate_keys(con)
    con.execute("CREATE INDEX IF NOT EXISTS errs_rid ON errs (rid)")


_PLAIN_CHAT = '{"system": "VARCHAR", "messages": [{"role": "VARCHAR", "content": "VARCHAR"}]}'


def _parse_plain_chat(con: duckdb.DuckDBPyConnection, skip: bool = False) -> None:
    """Start ``conversations`` with every line that is a plain, valid chat record, parsed once.

    Plain means ``{"system": str?, "messages": [{"role": str, "content": str}, ...]}`` with
    nothing else in it. ``json_transform`` alone would not prove that (it ignores unknown and
    duplicate keys and turns numbers into strings), so the line's shape is checked too, by
    counting the types of all its values (``$.**``, one more parse) rather than by a
    re-serialisation. With the transform's non-null ``messages`` of n messages, each with a
    non-null role and content, the line holds at least ``1 + 3n`` values (the list, n objects,
    2n members) plus the system prompt if set; exactly that many, ``2n (+1)`` of them strings,
    leaves no room for another or a repeated key, or a role, content or system that is not a
    string. Valid then means what the general rules would conclude for such a record in a
    chat-format file: user and assistant alternate, starting with the user and ending with the
    assistant, and no turn is blank. Anything else -- a system turn, null fields, duplicate keys
    -- simply takes the general path, which gives the same result more slowly.
    """
    con.execute(
        f"""
        CREATE TABLE conversations AS
        SELECT rid, file_id, s.system AS system, s.messages AS messages, 0 AS shift,
               NULL::VARCHAR AS payload, NULL::VARCHAR[] AS paths
        FROM (
            SELECT rid, file_id, s, json_type(text, '$.**') AS value_types,
                   len(s.messages) AS n, (s.system IS NOT NULL)::INTEGER AS has_system
            FROM (
                SELECT rid, file_id, text, json_transform(text, {_lit(_PLAIN_CHAT)}) AS s
                FROM raw WHERE utf8 AND json_valid(text) AND NOT {skip}
            )
        )
        WHERE n >= 2 AND n % 2 = 0
          -- coalesce: list_bool_and skips NULLs, and a null message, role or content is not plain.
          -- A text starting with printable ASCII is not blank; trim() (slow) decides the others.
          AND list_bool_and(list_transform(s.messages, lambda m, i: coalesce(
                  m.role = CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END
                  AND CASE WHEN regexp_matches(m.content, '^[!-~]') THEN true ELSE trim(m.content) <> '' END, false)))
          AND len(value_types) = 1 + 3 * n + has_system
          AND len(list_filter(value_types, lambda t: t = 'VARCHAR')) = 2 * n + has_system
        """
    )


def _check_messages(con: duckdb.DuckDBPyConnection) -> None:
    chat = ", ".join(_lit(f) for f in _CHAT)
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.MISSING_MESSAGES}', 'messages',
               'the record has no "messages" list: add the conversation as "messages": [{{"role": "user", ...}}, ...]'
        FROM doc WHERE fmt IN ({chat}, 'nova') AND jtype = 'OBJECT' AND p[1] IS NULL
        UNION ALL
        SELECT rid, '{E.WRONG_TYPE}', 'messages',
               format('"messages" must be a list, not {{}}', lower(json_type(p[1])))
        FROM doc WHERE fmt IN ({chat}, 'nova') AND p[1] IS NOT NULL AND json_type(p[1]) <> 'ARRAY'
        UNION ALL
        SELECT rid, '{E.EMPTY_MESSAGES}', 'messages',
               '"messages" is empty: a record needs at least a user turn and an assistant answer'
        FROM doc WHERE fmt IN ({chat}, 'nova') AND json_type(p[1]) = 'ARRAY' AND json_array_length(p[1]) = 0
        UNION ALL
        SELECT rid, '{E.WRONG_TYPE}', 'system',
               CASE WHEN fmt = 'nova' THEN '"system" must be {_NOVA_BLOCK}'
                    ELSE '"system" must be a string' END
        FROM doc WHERE fmt IN ({chat}, 'nova') AND p[2] IS NOT NULL AND json_type(p[2]) <> 'NULL'
              AND json_type(p[2]) <> CASE WHEN fmt = 'nova' THEN 'ARRAY' ELSE 'VARCHAR' END
        UNION ALL
        SELECT rid, '{E.WRONG_TYPE}', 'schemaVersion',
               '"schemaVersion" must be "bedrock-conversation-2024"'
        FROM doc WHERE fmt = 'nova' AND p[3] IS NOT NULL AND json_extract_string(p[3], '$') <> 'bedrock-conversation-2024'
        """
    )
    # One row per message, with its text already extracted (Nova: the text blocks joined).
    con.execute(
        """
        CREATE TABLE msg0 AS
        SELECT rid, fmt, strict, unnest(json_extract(p[1], '$[*]')) AS m,
               unnest(generate_series(0, json_array_length(p[1])::BIGINT - 1)) AS pos
        FROM doc WHERE fmt IN ('bedrock', 'openai', 'nova') AND json_type(p[1]) = 'ARRAY'
        """
    )
    con.execute(
        """
        CREATE TABLE msg AS
        SELECT rid, fmt, strict, pos, mtype, mkeys, types[1] AS role_type, strs[1] AS role, types[2] AS ctype,
               CASE WHEN fmt = 'nova' AND types[2] = 'ARRAY' THEN json_extract(m, '$.content[*]') END AS blocks,
               CASE WHEN fmt <> 'nova' AND types[2] = 'VARCHAR' THEN strs[2] END AS ctext
        FROM (
            SELECT rid, fmt, strict, pos, m, json_type(m) AS mtype,
                   CASE WHEN json_type(m) = 'OBJECT' THEN json_keys(m) END AS mkeys,
                   json_type(m, ['$.role', '$.content']) AS types,
                   json_extract_string(m, ['$.role', '$.content']) AS strs
            FROM msg0
        )
        """
    )
    con.execute("DROP TABLE msg0")
    con.execute(
        """
        UPDATE msg SET ctext = array_to_string(list_transform(blocks, lambda b: json_extract_string(b, '$.text')), '')
        WHERE blocks IS NOT NULL
          AND list_bool_and(list_transform(blocks, lambda b: json_type(b, '$.text') = 'VARCHAR'))
        """
    )
    # A leading "system" message is OpenAI's way to give the system prompt; Bedrock has a key.
    con.execute(
        """
        ALTER TABLE msg ADD COLUMN is_system BOOLEAN;
        UPDATE msg SET is_system = coalesce(pos = 0 AND role = 'system' AND NOT (strict AND fmt = 'bedrock'), false);
        """
    )
    field = "format('messages[{}]', pos)"
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.WRONG_TYPE}', {field}, {field} || ' must be an object with "role" and "content"'
        FROM msg WHERE mtype <> 'OBJECT'
        UNION ALL
        SELECT rid, '{E.UNEXPECTED_KEY}', {field} || '.' || k,
               format('key "{{}}" is not allowed in a message (only "role" and "content"): remove it', k)
        FROM (SELECT rid, pos, unnest(mkeys) AS k FROM msg) WHERE k NOT IN ('role', 'content')
        UNION ALL
        SELECT rid, '{E.UNEXPECTED_KEY}', {field} || '.content',
               'a Nova content block here holds keys other than "text" that Tuneline does not read: write it '
               || 'in one of Nova''s documented block shapes (text, image, video, document, toolUse, toolResult, '
               || 'reasoningContent)'
        FROM msg WHERE blocks IS NOT NULL
          -- list_distinct: a block with "text" twice is a duplicate_key, not another block type.
          AND NOT list_bool_and(list_transform(blocks, lambda b: json_type(b) = 'OBJECT'
                                AND list_distinct(json_keys(b)) = ['text']))
          AND list_bool_and(list_transform(blocks, lambda b: json_type(b, '$.text') = 'VARCHAR'))
        UNION ALL
        SELECT rid, '{E.UNKNOWN_ROLE}', {field} || '.role',
               CASE WHEN role_type IS NULL THEN {field} || ' has no "role": set it to "user" or "assistant"'
                    WHEN role_type <> 'VARCHAR' THEN {field} || '.role must be the string "user" or "assistant"'
                    WHEN role = 'system' THEN 'a "system" turn is only allowed first (OpenAI) or as the "system" key: move it there'
                    ELSE format('role "{{}}" is not allowed: use "user" or "assistant"', role) END
        FROM msg WHERE mtype = 'OBJECT' AND NOT is_system
          AND (role_type IS DISTINCT FROM 'VARCHAR' OR role NOT IN ('user', 'assistant'))
        UNION ALL
        SELECT rid, '{E.WRONG_TYPE}', {field} || '.content',
               CASE WHEN ctype IS NULL THEN {field} || ' has no "content": add the text of the turn'
                    WHEN fmt = 'nova' THEN {field} || '.content must be {_NOVA_BLOCK}'
                    ELSE {field} || '.content must be a string' END
        FROM msg WHERE mtype = 'OBJECT' AND ctext IS NULL
        UNION ALL
        SELECT rid, '{E.EMPTY_CONTENT}', {field} || '.content',
               {field} || ' has empty content: write the turn''s text or drop the record'
        FROM msg WHERE ctext IS NOT NULL AND trim(ctext) = ''
        """
    )
    # Turn order over the conversation proper (without an OpenAI system turn).
    con.execute(
        f"""
        INSERT INTO errs
        WITH conv AS (
            SELECT rid, pos, role,
                   lag(role) OVER (PARTITION BY rid ORDER BY pos) AS prev,
                   row_number() OVER (PARTITION BY rid ORDER BY pos) AS k,
                   row_number() OVER (PARTITION BY rid ORDER BY pos DESC) AS k_rev
            FROM msg WHERE mtype = 'OBJECT' AND NOT is_system
        )
        SELECT rid, '{E.FIRST_NOT_USER}', format('messages[{{}}].role', pos),
               format('the conversation starts with "{{}}": the first turn must be "user"', role)
        FROM conv WHERE k = 1 AND role IS DISTINCT FROM 'user'
        UNION ALL
        SELECT rid, '{E.LAST_NOT_ASSISTANT}', format('messages[{{}}].role', pos),
               format('the conversation ends with "{{}}": the last turn must be "assistant" (add the '
                      || 'assistant answer it lacks; prompts a teacher model answers, for distillation, '
                      || 'are read with data.kind: prompt)', role)
        FROM conv WHERE k_rev = 1 AND role IS DISTINCT FROM 'assistant'
        UNION ALL
        SELECT rid, '{E.ROLES_NOT_ALTERNATING}', format('messages[{{}}].role', pos),
               format('two "{{}}" turns in a row at messages[{{}}]: merge them, so that user and assistant alternate',
                      role, pos)
        FROM conv WHERE k > 1 AND role = prev AND role IN ('user', 'assistant')
        UNION ALL
        SELECT rid, '{E.EMPTY_MESSAGES}', 'messages',
               'the record has only a system prompt: add a user turn and an assistant answer'
        FROM (SELECT rid FROM msg GROUP BY rid HAVING bool_and(is_system))
        """
    )
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.UNEXPECTED_KEY}', 'system',
               'the record has both a "system" key and a leading system message: keep only one'
        FROM doc WHERE fmt = 'openai' AND p[2] IS NOT NULL AND json_type(p[2]) <> 'NULL'
          AND rid IN (SELECT rid FROM msg WHERE is_system)
        """
    )


def _check_duplicate_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Reject records in which an object of the format holds one key twice.

    Such a record is ambiguous: DuckDB keeps the first value, Python's ``json`` and most viewers
    the last, so what a reviewer reads is not what would be trained on. Plain records never get
    here (their shape check counts every key); for the others the key lists are already
    extracted, so this costs next to nothing. The objects checked are all those a format can accept: the record,
    each message, and Nova's text blocks; anything nested deeper is a wrong type already.
    """
    # (rid, field prefix, keys): every object a record format reads keys from.
    objects = """
        SELECT rid, '' AS prefix, keys FROM doc WHERE jtype = 'OBJECT'
        UNION ALL
        SELECT rid, format('messages[{}].', pos), mkeys FROM msg WHERE mtype = 'OBJECT'
        UNION ALL
        SELECT rid, format('messages[{}].content[{}].', pos, b - 1), json_keys(blocks[b])
        FROM (SELECT rid, pos, blocks, unnest(range(1, len(blocks) + 1)) AS b FROM msg WHERE blocks IS NOT NULL)
        WHERE json_type(blocks[b]) = 'OBJECT'
        UNION ALL
        SELECT rid, format('system[{}].', b - 1), json_keys(p[2], format('$[{}]', b - 1))
        FROM (SELECT rid, p, unnest(range(1, json_array_length(p[2])::BIGINT + 1)) AS b
              FROM doc WHERE fmt = 'nova' AND json_type(p[2]) = 'ARRAY')
        WHERE json_type(p[2], format('$[{}]', b - 1)) = 'OBJECT'
    """
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.DUPLICATE_KEY}', prefix || k,
               format('key "{{}}" appears {{}} times in {{}}: JSON readers disagree which value counts (some '
                      || 'keep the first, others the last), so the record is ambiguous: keep one "{{}}" and delete '
                      || 'the others', k, count(*), CASE WHEN prefix = '' THEN 'the record' ELSE rtrim(prefix, '.') END, k)
        FROM (SELECT rid, prefix, unnest(keys) AS k FROM ({objects}) WHERE len(keys) <> len(list_distinct(keys)))
        GROUP BY rid, prefix, k HAVING count(*) > 1
        """
    )


def _check_prompt_completion(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, CASE WHEN p[i] IS NULL OR json_type(p[i]) = 'NULL' THEN '{E.MISSING_MESSAGES}'
                         WHEN json_type(p[i]) <> 'VARCHAR' THEN '{E.WRONG_TYPE}'
                         ELSE '{E.EMPTY_CONTENT}' END,
               field,
               CASE WHEN p[i] IS NULL OR json_type(p[i]) = 'NULL'
                        THEN format('the record has no "{{}}": add it, or map the right column in data.columns', field)
                    WHEN json_type(p[i]) <> 'VARCHAR' THEN format('"{{}}" must be a string', field)
                    ELSE format('"{{}}" is empty: write its text or drop the record', field) END
        FROM (SELECT rid, p, unnest([4, 5]) AS i, unnest(['prompt', 'completion']) AS field
              FROM doc WHERE fmt = 'prompt-completion')
        WHERE p[i] IS NULL OR json_type(p[i]) <> 'VARCHAR' OR trim(json_extract_string(p[i], '$')) = ''
        UNION ALL
        SELECT rid, '{E.WRONG_TYPE}', 'system', '"system" must be a string'
        FROM doc WHERE fmt = 'prompt-completion' AND p[6] IS NOT NULL
          AND json_type(p[6]) NOT IN ('VARCHAR', 'NULL')
        """
    )


def conversation_texts(source: str = "conversations") -> str:
    """SQL for ``(rid, idx, role, text, shift, field)``: one row per text of the conversations in ``source``.

    idx 0 is the system prompt; message ``i`` of the ``messages`` list (from 1) has idx
    ``shift + i``, so that ``idx - 1`` is its position in the input's ``messages``. ``field``
    names the text's place in the record for error messages (``paths`` where the record has them).
    """
    return f"""
        SELECT rid, 0 AS idx, 'system' AS role, system AS text, shift, 'system' AS field
        FROM {source} WHERE system IS NOT NULL
        UNION ALL
        SELECT rid, shift + i AS idx, m.role AS role, m.content AS text, shift,
               coalesce(paths[i], format('messages[{{}}].content', shift + i - 1)) AS field
        FROM (SELECT rid, shift, paths, unnest(messages) AS m, generate_subscripts(messages, 1) AS i FROM {source})
    """


def build_conversations(con: duckdb.DuckDBPyConnection) -> None:
    """Complete ``conversations(rid, file_id, system, messages, shift)`` with every record that took
    the general path and has no error so far.

    ``messages`` holds ``{role, content}`` structs in order; ``shift`` is 1 where an OpenAI-style
    leading system message became the system prompt, else 0 (see :func:`conversation_texts`).
    """
    con.execute(
        """
        CREATE TEMP TABLE texts AS
        WITH ok AS (SELECT rid, fmt, p FROM doc ANTI JOIN errs USING (rid))
        SELECT rid, 0 AS idx, 'system' AS role,
               CASE WHEN fmt = 'nova'
                    THEN array_to_string(list_transform(json_extract(p[2], '$[*]'),
                                                        lambda b: json_extract_string(b, '$.text')), '')
                    ELSE json_extract_string(p[2], '$') END AS text
        FROM ok WHERE fmt IN ('bedrock', 'openai', 'nova') AND json_type(p[2]) IN ('VARCHAR', 'ARRAY')
        UNION ALL
        SELECT m.rid, CASE WHEN m.is_system THEN 0 ELSE m.pos + 1 END, m.role, m.ctext
        FROM msg m SEMI JOIN ok USING (rid)
        UNION ALL
        SELECT rid, 0, 'system', json_extract_string(p[6], '$') FROM ok
        WHERE fmt = 'prompt-completion' AND json_type(p[6]) = 'VARCHAR'
        UNION ALL
        SELECT rid, 1, 'user', json_extract_string(p[4], '$') FROM ok WHERE fmt = 'prompt-completion'
        UNION ALL
        SELECT rid, 2, 'assistant', json_extract_string(p[5], '$') FROM ok WHERE fmt = 'prompt-completion'
        """
    )
    con.execute(f"INSERT INTO conversations {_regroup('texts')}")
    con.execute("DROP TABLE texts")
    con.execute("DROP TABLE msg")
    con.execute("DROP TABLE doc")


def _regroup(texts: str) -> str:
    """SQL turning ``(rid, idx, role, text)`` rows back into conversations rows."""
    return f"""
        SELECT rid, NULL AS file_id, max(text) FILTER (WHERE idx = 0) AS system,
               list({{'role': role, 'content': text}} ORDER BY idx) FILTER (WHERE idx > 0) AS messages,
               coalesce(min(idx) FILTER (WHERE idx > 0) - 1, 0) AS shift,
               NULL::VARCHAR AS payload, NULL::VARCHAR[] AS paths
        FROM {texts} GROUP BY rid
    """


def check_records(con: duckdb.DuckDBPyConnection, limits: TargetLimits) -> None:
    """Target rules on the texts: reserved strings (token limits are checked by the caller)."""
    if not limits.reserved_strings:
        return

    def hits(text: str) -> str:
        return " OR ".join(f"contains({text}, {_lit(s)})" for s in limits.reserved_strings)

    shown = " or ".join(repr(s).replace("'", '"') for s in limits.reserved_strings)
    # Whole records are screened first, so that only the few with a hit are taken apart.
    con.execute(
        f"CREATE TEMP TABLE screened AS SELECT * FROM conversations WHERE {hits('system')} "
        f"OR list_bool_or(list_transform(messages, lambda m: {hits('m.content')}))"
    )
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{E.RESERVED_STRING}', field,
               {_lit(f"the text contains {shown}, which {limits.target.value} refuses in training data: reword it")}
        FROM ({conversation_texts("screened")}) WHERE {hits("text")}
        """
    )
    con.execute("DROP TABLE screened")


def apply_pii(con: duckdb.DuckDBPyConnection, policy: PiiPolicy) -> None:
    """Count PII per type in ``conversations``, redact in place, and reject records per the policy.

    Creates ``pii_found(rid, idx, type, n)``. The cheap ``pii.PREFILTER`` (RE2) picks the few
    records, then texts, that can hold PII at all; only those go through ``pii.scan_texts``
    (normalisation, validating detectors) in Python.
    """
    # No prefilter branch can match across the record separator chr(30), so a record matches
    # iff one of its texts does.
    con.execute(
        "CREATE TEMP TABLE screened AS SELECT * FROM conversations WHERE regexp_matches(concat_ws(chr(30), "
        f"system, array_to_string(list_transform(messages, lambda m: m.content), chr(30))), {_lit(pii.PREFILTER)})"
    )
    cand = con.sql(
        f"SELECT rid, idx, text, field FROM ({conversation_texts('screened')}) "
        f"WHERE regexp_matches(text, {_lit(pii.PREFILTER)})"
    ).to_arrow_table()
    con.execute("DROP TABLE screened")
    rids, idxs = cand.column("rid").to_pylist(), cand.column("idx").to_pylist()
    fields = cand.column("field").to_pylist()
    scan_rows: dict[str, list] = {"rid": [], "idx": [], "redacted": []}
    found_rows: dict[str, list] = {"rid": [], "idx": [], "field": [], "type": [], "n": []}
    for pos, redacted, counts in pii.scan_texts(cand.column("text").to_pylist(), policy):
        scan_rows["rid"].append(rids[pos])
        scan_rows["idx"].append(idxs[pos])
        scan_rows["redacted"].append(redacted)
        for kind, n in counts.items():
            found_rows["rid"].append(rids[pos])
            found_rows["idx"].append(idxs[pos])
            found_rows["field"].append(fields[pos])
            found_rows["type"].append(kind)
            found_rows["n"].append(n)
    del cand
    scan = pa.table(scan_rows, schema=pa.schema([("rid", pa.int64()), ("idx", pa.int64()), ("redacted", pa.string())]))
    found = pa.table(
        found_rows,
        schema=pa.schema([("rid", pa.int64()), ("idx", pa.int64()), ("field", pa.string()), ("type", pa.string()),
                          ("n", pa.int64())]),
    )
    con.register("pii_scan_arrow", scan)
    con.register("pii_found_arrow", found)
    con.execute("CREATE TABLE pii_scan AS SELECT * FROM pii_scan_arrow")
    con.execute("CREATE TABLE pii_found AS SELECT * FROM pii_found_arrow")
    con.unregister("pii_scan_arrow")
    con.unregister("pii_found_arrow")
    changed = "SELECT DISTINCT rid FROM pii_scan"
    con.execute(f"CREATE TEMP TABLE changed AS SELECT * FROM conversations WHERE rid IN ({changed})")
    redacted = (
        f"(SELECT t.rid, t.idx, t.role, coalesce(s.redacted, t.text) AS text FROM ({conversation_texts('changed')}) t "
        "LEFT JOIN pii_scan s USING (rid, idx))"
    )
    con.execute(
        f"""
        CREATE TEMP TABLE pii_redacted AS
        SELECT g.rid, c.file_id, g.system, g.messages, g.shift, c.payload, c.paths
        FROM ({_regroup(redacted)}) g JOIN changed c USING (rid)
        """
    )
    con.execute("DROP TABLE changed")
    _redact_payloads(con, "pii_redacted")
    con.execute("DELETE FROM conversations WHERE rid IN (SELECT rid FROM pii_redacted)")
    con.execute("INSERT INTO conversations SELECT * FROM pii_redacted")
    con.execute("DROP TABLE pii_redacted")
    rejecting = [kind for kind in pii.PII_KINDS if getattr(policy, kind) is PiiAction.REJECT]
    if rejecting:
        names = ", ".join(_lit(n) for n in rejecting)
        con.execute(
            f"""
            INSERT INTO errs
            SELECT rid, '{E.PII}', field,
                   format('contains {{}} ({{}}), which the PII policy rejects: remove it, or set data.pii.{{}} to "redact"',
                          replace(type, '_', ' '), n, type)
            FROM pii_found WHERE type IN ({names})
            """
        )


def _redact_payloads(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Write the redacted texts of ``table``'s records that have a ``payload`` back into it, so
    that what is written out is the redacted record (its texts are in ``record_texts`` order)."""
    rows = con.execute(
        f"""
        SELECT t.rid, t.payload, list(s.idx ORDER BY s.idx), list(s.redacted ORDER BY s.idx)
        FROM {table} t JOIN pii_scan s USING (rid) WHERE t.payload IS NOT NULL GROUP BY ALL
        """
    ).fetchall()
    if not rows:
        return
    rebuilt: dict[str, list] = {"rid": [], "payload": []}
    for rid, payload, idxs, texts in rows:
        by_idx = dict(zip(idxs, texts, strict=True))
        record = replace_texts(
            record_from_dict(json.loads(payload)),
            by_idx.pop(0, None),
            {idx - 1: text for idx, text in by_idx.items()},
        )
        rebuilt["rid"].append(rid)
        rebuilt["payload"].append(payload_json(record))
    con.register("_rebuilt", pa.table(rebuilt))
    con.execute(f"UPDATE {table} SET payload = r.payload FROM _rebuilt r WHERE {table}.rid = r.rid")
    con.unregister("_rebuilt")
