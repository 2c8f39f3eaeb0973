"""The hash-chained audit log against real SeaweedFS and MLflow: every way of tampering with a record is
named by `verify` and by `tuneline audit --verify`; a bad object never crashes reading the log."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tuneline.governance.approval import ApprovalRecord
from tuneline.governance.audit import AUDIT_HEAD_TAG, GENESIS, AuditLog, record_digest, registry_drift
from tuneline.settings import Settings
from tuneline.stages.context import StageContext

pytestmark = [pytest.mark.service]


@pytest.fixture
def ctx(stack_settings: Settings) -> StageContext:
    return StageContext(stack_settings)


def _record(model: str, kind: str = "approval", actor: str = "policy", **fields) -> ApprovalRecord:
    return ApprovalRecord(kind=kind, model_name=model, recorded_at=datetime.now(UTC), actor=actor, **fields)


def _log_of_three(ctx: StageContext, prefix: str = "audit") -> tuple[AuditLog, str, list[str]]:
    model = f"audit-{uuid.uuid4().hex[:8]}"
    log = AuditLog(ctx.store, ctx.mlflow, prefix=prefix)
    uris = [log.append(_record(model, approved=i % 2 == 0, reasons=[f"r{i}"])) for i in range(3)]
    return log, model, uris


@pytest.fixture
def tampered(ctx: StageContext) -> tuple[AuditLog, str, list[str]]:
    """A log of three records under a prefix the test's own key may rewrite and delete: the attacker
    these tests play got past the store's identities (an admin key, the filer), so only the chain
    and its MLflow anchor stand between them and an unnoticed change."""
    return _log_of_three(ctx, prefix=f"tamper-{uuid.uuid4().hex[:8]}/audit")


def _key(uri: str) -> str:
    return uri.split("/", 3)[-1]


def _cli(settings: Settings, *args: str):
    from tuneline_cli.main import app

    return CliRunner().invoke(app, list(args), env=settings.as_env())


def test_records_chain_in_order_and_the_head_is_anchored_in_mlflow(ctx) -> None:
    log, model, uris = _log_of_three(ctx)
    records = log.records(model)
    assert [r.sequence for r in records] == [1, 2, 3]
    assert records[0].previous_digest == GENESIS
    for before, after, uri in zip(records, records[1:], uris, strict=False):
        assert after.previous_digest == record_digest(ctx.store.get_bytes(uri))
        assert before.sequence + 1 == after.sequence
    head = ctx.mlflow.get_registered_model(model).tags[AUDIT_HEAD_TAG]
    assert head == f"3:{record_digest(ctx.store.get_bytes(uris[-1]))}"
    assert log.verify([model]) == []


def test_a_rewritten_record_is_named(ctx, tampered) -> None:
    log, model, uris = tampered
    forged = json.loads(ctx.store.get_bytes(uris[1]))
    forged["actor"], forged["approved"] = "alice", True
    ctx.store.put_bytes(uris[1], (json.dumps(forged) + "\n").encode())
    problems = log.verify([model])
    assert len(problems) == 1
    assert problems[0].key == uris[1].split("/", 3)[-1] and "record 2 was rewritten" in problems[0].problem


def test_a_rewritten_last_record_is_caught_by_the_anchor(ctx, tampered) -> None:
    log, model, uris = tampered
    forged = json.loads(ctx.store.get_bytes(uris[2]))
    forged["reasons"] = ["nothing to see"]
    ctx.store.put_bytes(uris[2], (json.dumps(forged) + "\n").encode())
    (problem,) = log.verify([model])
    assert problem.key == uris[2].split("/", 3)[-1] and "the anchor in MLflow" in problem.problem


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_deleted_record_is_named(ctx, tampered, which: int) -> None:
    log, model, uris = tampered
    ctx.store.client.delete_object(Bucket=ctx.store.bucket, Key=_key(uris[which]))
    problems = log.verify([model])
    assert [p.problem for p in problems if "deleted" in p.problem], f"deleting record {which + 1} went unnoticed: {problems}"
    assert any(f"record {which + 1} is missing" in p.problem for p in problems)


def test_an_inserted_record_is_named(ctx, tampered) -> None:
    log, model, uris = tampered
    # a forger copies record 2's link and sequence into a record of their own, under a key that sorts beside it
    real = json.loads(ctx.store.get_bytes(uris[1]))
    forged = {**real, "actor": "mallory", "approved": True, "reasons": ["approved"]}
    key = f"{log.prefix}/{model}/0000000002-approval-forged.jsonl"
    ctx.store.put_bytes(ctx.store.uri(key), (json.dumps(forged) + "\n").encode())
    (problem,) = log.verify([model])
    assert problem.key == key and "an inserted record" in problem.problem


def _forge_next(ctx: StageContext, log: AuditLog, model: str, uris: list[str]) -> str:
    """A record linked to the anchored head, written straight into S3: what a key holder can forge."""
    last = ctx.store.get_bytes(uris[-1])
    forged = {**json.loads(last), "sequence": len(uris) + 1, "previous_digest": record_digest(last),
              "actor": "mallory", "approved": True}
    key = f"{log.prefix}/{model}/{len(uris) + 1:010d}-approval.jsonl"
    ctx.store.put_bytes(ctx.store.uri(key), (json.dumps(forged) + "\n").encode())
    return key


def test_a_forged_record_linked_to_the_head_is_never_adopted_by_the_next_append(ctx) -> None:
    log, model, uris = _log_of_three(ctx)
    forged = _forge_next(ctx, log, model, uris)
    assert forged not in {r for r in (e.key for e in log.listing([model]) if e.trusted)}
    # the next legitimate append neither takes the forgery into the chain nor overwrites it (it sits
    # where the next record would go), and is not blocked by it
    appended = log.append(_record(model, reasons=["after the forgery"]))
    assert _key(appended) != forged
    trusted = log.trusted_records(model)
    assert [r.sequence for r in trusted] == [1, 2, 3, 4] and trusted[-1].reasons == ["after the forgery"]
    assert all(r.actor != "mallory" for r in trusted)
    (problem,) = log.verify([model])
    assert problem.key == forged and "an inserted record" in problem.problem


def test_a_chain_without_its_anchor_vouches_for_nothing(ctx) -> None:
    """Records written into S3 for a model MLflow holds no head for (a fresh install's reviewers'
    chain, a model never registered) are listed off the chain, never trusted."""
    log = AuditLog(ctx.store, ctx.mlflow)
    model = f"audit-{uuid.uuid4().hex[:8]}"
    record = _record(model, actor="mallory", approved=True).model_copy(update={"sequence": 1, "previous_digest": GENESIS})
    key = f"audit/{model}/0000000001-approval.jsonl"
    ctx.store.put_bytes(ctx.store.uri(key), (record.model_dump_json() + "\n").encode())
    assert log.trusted_records(model) == []
    problems = {p.problem for p in log.verify([model])}
    assert any("no tuneline.audit_head tag" in p for p in problems), problems
    assert any("an inserted record" in p for p in problems), problems


def test_a_writer_that_died_before_moving_the_head_leaves_a_record_the_next_append_adopts(
    ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneline.governance.audit import MlflowAnchor

    log, model, uris = _log_of_three(ctx)

    def dies(self, model_name, head):  # the record is announced and stored; the head never moves
        raise ConnectionError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowAnchor, "write", dies)
        with pytest.raises(ConnectionError):
            log.append(_record(model, reasons=["r3"]))
    assert [r.sequence for r in log.trusted_records(model)] == [1, 2, 3, 4]  # announced: vouched for
    log.append(_record(model, reasons=["r4"]))
    assert [r.sequence for r in log.trusted_records(model)] == [1, 2, 3, 4, 5]
    assert log.verify([model]) == []


def test_a_malformed_object_is_named_and_never_crashes_the_reader(ctx, stack_settings) -> None:
    log, model, uris = _log_of_three(ctx)
    bad_key = f"audit/{model}/0000000004-approval.jsonl"
    ctx.store.put_bytes(ctx.store.uri(bad_key), b"{not json\n")
    assert [r.sequence for r in log.records(model)] == [1, 2, 3]  # no exception, the good ones read
    problems = log.verify([model])
    assert any(p.key == bad_key and "not a valid audit record" in p.problem for p in problems)

    listing = _cli(stack_settings, "audit", "--model", model)
    assert listing.exit_code == 0, listing.output
    assert "Traceback" not in listing.output and bad_key in listing.output

    verified = _cli(stack_settings, "audit", "--model", model, "--verify")
    assert verified.exit_code == 1 and bad_key in verified.output and "Traceback" not in verified.output


def test_a_record_with_a_naive_timestamp_is_unreadable_not_a_crash(ctx, stack_settings) -> None:
    """Listing sorts records of several chains by time: one naive timestamp must not break it."""
    log, model, uris = _log_of_three(ctx)
    naive = {**json.loads(ctx.store.get_bytes(uris[0])), "sequence": 4, "recorded_at": "2026-12-04T01:00:00"}
    key = f"audit/{model}/0000000004-approval.jsonl"
    ctx.store.put_bytes(ctx.store.uri(key), (json.dumps(naive) + "\n").encode())
    assert [r.sequence for r in log.records(model)] == [1, 2, 3]
    assert any(p.key == key and "recorded_at" in p.problem for p in log.verify([model]))
    listing = _cli(stack_settings, "audit")  # every chain at once: the case that sorted by time
    assert listing.exit_code == 0 and "Traceback" not in listing.output, listing.output


def test_audit_json_is_one_document_and_verify_passes_an_intact_log(ctx, stack_settings) -> None:
    _, model, _ = _log_of_three(ctx)
    result = _cli(stack_settings, "audit", "--model", model, "--json", "--verify")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [r["sequence"] for r in document["records"]] == [1, 2, 3]
    assert document["verified"] is True and document["problems"] == []


def test_registry_changes_made_outside_tuneline_are_reported(ctx, stack_settings, run_config, lineage) -> None:
    from tuneline.stages.promote import run_promote

    config = run_config()
    summary = {"task/exact_match": {"candidate": 0.8}}
    first = run_promote(ctx, config, *lineage(), summary)
    # a second candidate, rejected, then made champion and tagged approved straight through the MLflow API
    rejected = run_promote(ctx, config, *lineage(approved=False, champion=first.version), summary)
    log = AuditLog(ctx.store, ctx.mlflow)
    assert registry_drift(log, ctx.mlflow, config.name) == []
    ctx.mlflow.set_registered_model_alias(config.name, "champion", rejected.version)
    ctx.mlflow.set_model_version_tag(config.name, rejected.version, "tuneline.approved", "true")
    problems = [str(p) for p in registry_drift(log, ctx.mlflow, config.name)]
    assert any("alias 'champion' points to version " + rejected.version in p for p in problems)
    assert any(f"version {rejected.version} is tagged tuneline.approved=true" in p for p in problems)
    result = _cli(stack_settings, "audit", "--model", config.name, "--verify")
    assert result.exit_code == 1 and "changed outside Tuneline" in result.output


def test_plain_audit_marks_a_record_forged_straight_into_s3(ctx, stack_settings) -> None:
    log, model, uris = _log_of_three(ctx)
    # written with the audit writer's key alone, as an attacker holding it would: a copy of record 2
    # claiming an approval, under a key that sorts beside it, and a record claiming the next sequence
    real = json.loads(ctx.store.get_bytes(uris[1]))
    beside = f"audit/{model}/0000000002-approval-x.jsonl"
    after = f"audit/{model}/0000000004-approval.jsonl"
    ctx.store.put_bytes(ctx.store.uri(beside), (json.dumps({**real, "actor": "mallory", "approved": True}) + "\n").encode())
    ctx.store.put_bytes(ctx.store.uri(after), (json.dumps({**real, "sequence": 4, "actor": "mallory"}) + "\n").encode())

    listing = _cli(stack_settings, "audit", "--model", model)
    assert listing.exit_code == 0, listing.output
    marked = [line for line in listing.stdout.splitlines() if "[OFF-CHAIN" in line]
    assert len(marked) == 2 and all("by mallory" in line for line in marked), listing.stdout
    assert {beside, after} == {line.rsplit("[OFF-CHAIN ", 1)[1].rstrip("]") for line in marked}
    assert sum("by policy" in line and "OFF-CHAIN" not in line for line in listing.stdout.splitlines()) == 3
    assert "2 record(s) marked OFF-CHAIN are not on the verified chain" in listing.output
    assert "tuneline audit --verify" in listing.output

    document = json.loads(_cli(stack_settings, "audit", "--model", model, "--json").stdout)
    trusted = {r["key"]: r["trusted"] for r in document["records"]}
    assert trusted == {_key(uris[0]): True, _key(uris[1]): True, _key(uris[2]): True, beside: False, after: False}


def test_an_intact_log_lists_without_marks(ctx, stack_settings) -> None:
    _, model, _ = _log_of_three(ctx)
    listing = _cli(stack_settings, "audit", "--model", model)
    assert listing.exit_code == 0 and "OFF-CHAIN" not in listing.output and len(listing.stdout.splitlines()) == 3


def test_enrolments_are_audited_and_a_credential_written_behind_tunelines_back_fails_verify(ctx, stack_settings) -> None:
    from tests.governance.test_reviewers import _forge
    from tuneline.governance.reviewers import ReviewerRegistry

    registry = ReviewerRegistry(ctx.store, ctx.mlflow)  # the CLI's own: audit/_reviewers
    name = f"rev-{uuid.uuid4().hex[:8]}"
    added = _cli(stack_settings, "reviewers", "add", name)
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    listing = _cli(stack_settings, "audit", "--model", registry.chain)
    assert listing.exit_code == 0, listing.output
    (line,) = [line for line in listing.stdout.splitlines() if f"reviewer {name} " in line]
    assert "enrolment" in line and "OFF-CHAIN" not in line and token not in listing.output
    everything = _cli(stack_settings, "audit", "--json")  # the whole log lists enrolments too
    assert any(r["kind"] == "enrolment" and r["reviewer"] == name for r in json.loads(everything.stdout)["records"])
    assert token not in everything.stdout
    registry.verify(name, token)

    forged = f"forged-{uuid.uuid4().hex[:8]}"
    _forge(registry, forged)
    verified = _cli(stack_settings, "audit", "--model", registry.chain, "--verify")
    assert verified.exit_code == 1
    assert f"TAMPERED audit/_reviewers/{forged}.json: reviewer {forged!r}'s credential has no enrolment record" in verified.output
    assert f"audit/_reviewers/{name}.json" not in verified.output
