"""The audit log in S3: one object per record, hash-chained per model, the chain's head in MLflow.

S3 objects cannot be appended to, and rewriting a shared log object would race and could lose
records. So each record is its own one-line JSON object, written once under
``audit/<model>/<sequence>-<kind>.jsonl`` and never rewritten.

Tamper evidence: each record carries its ``sequence`` (1, 2, ...) and the SHA-256 of the exact
bytes of the record before it (``previous_digest``; the first one carries ``GENESIS``). The head of
the chain — the last sequence and the digest of its bytes — is a tag on the MLflow registered model
(``tuneline.audit_head``), a second system with its own credentials. So rewriting, deleting,
inserting or reordering a record breaks either a link or the head, and ``verify`` names the record.
What it cannot catch: someone holding both the audit writer's S3 key and MLflow write access who
rewrites the tail and the head together (see docs/operations.md, "Secrets and access").

Appends must be serialised per model (the Prefect layer holds the per-model promotion lock for
every append); a second writer for the same sequence is refused by the existence check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from tuneline.governance.approval import ApprovalRecord
from tuneline.storage.s3 import ObjectStore

__all__ = [
    "AUDIT_HEAD_TAG",
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "ChainHead",
    "problems_as_json",
    "record_digest",
    "registry_drift",
]

AUDIT_HEAD_TAG = "tuneline.audit_head"  # "<sequence>:<sha256 of that record's bytes>"
# Set before a record is stored and cleared once the head has moved past it: the one record a
# writer that died in between leaves behind, which the chain may adopt (and nothing else).
AUDIT_PENDING_TAG = "tuneline.audit_pending"
GENESIS = "0" * 64
REVIEWERS_PREFIX = "_reviewers"  # beside the models' logs; model names cannot start with "_"


def record_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    sequence: int
    digest: str

    def __str__(self) -> str:
        return f"{self.sequence}:{self.digest}"

    @classmethod
    def parse(cls, value: str) -> ChainHead:
        sequence, _, digest = value.partition(":")
        if not sequence.isdigit() or len(digest) != 64:
            raise ValueError(f"malformed audit head {value!r}")
        return cls(int(sequence), digest)


GENESIS_HEAD = ChainHead(0, GENESIS)


@dataclass
class AuditEntry:
    """One stored object of the log: its key, its bytes' digest, and the record or why it is unreadable."""

    key: str
    digest: str
    record: ApprovalRecord | None = None
    error: str | None = None
    trusted: bool | None = None  # the anchored chain vouches for these bytes; None until walked


@dataclass(frozen=True)
class AuditProblem:
    model_name: str
    key: str | None
    problem: str

    def __str__(self) -> str:
        where = self.key or f"model {self.model_name!r}"
        return f"{where}: {self.problem}"


def _anchor_description(model_name: str) -> str:
    # Chains of Tuneline's own (names no model can take) show up in MLflow's model list: say so.
    if model_name.startswith("_"):
        return (
            f"Not a model: the MLflow anchor of Tuneline's audit chain {model_name!r} (its tags hold the "
            "chain's head). Keep it: without it `tuneline audit --verify` cannot vouch for that chain."
        )
    return "Managed by Tuneline."


class MlflowAnchor:
    """The chain head as a tag on the MLflow registered model (created when missing)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read_both(self, model_name: str) -> tuple[ChainHead | None, ChainHead | None]:
        """The head, and the record a writer announced before storing it (see
        :meth:`AuditLog.append`), from one read of the registered model. A malformed head raises
        ``ValueError``; a malformed announcement vouches for nothing."""
        try:
            model = self.client.get_registered_model(model_name)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None, None
            raise
        tags = model.tags or {}
        pending = None
        if value := tags.get(AUDIT_PENDING_TAG):
            try:
                pending = ChainHead.parse(value)
            except ValueError:
                pending = None
        head = tags.get(AUDIT_HEAD_TAG)
        return (ChainHead.parse(head) if head else None), pending

    def _ensure_model(self, model_name: str) -> None:
        try:
            model = self.client.get_registered_model(model_name)
            wanted = _anchor_description(model_name)
            if model_name.startswith("_") and model.description != wanted:  # an anchor made before it said so
                self.client.update_registered_model(model_name, description=wanted)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise
            try:
                self.client.create_registered_model(model_name, description=_anchor_description(model_name))
            except MlflowException as create_exc:  # created meanwhile by a registration
                if create_exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def announce(self, model_name: str, record: ChainHead) -> None:
        self._ensure_model(model_name)
        self.client.set_registered_model_tag(model_name, AUDIT_PENDING_TAG, str(record))

    def write(self, model_name: str, head: ChainHead) -> None:
        self._ensure_model(model_name)
        self.client.set_registered_model_tag(model_name, AUDIT_HEAD_TAG, str(head))
        try:
            self.client.delete_registered_model_tag(model_name, AUDIT_PENDING_TAG)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise


class AuditLog:
    """Append and read the log; ``mlflow`` (an ``MlflowClient``) anchors the chain and is needed to
    append or verify. Reading alone (``records``/``entries``) needs only the store."""

    def __init__(self, store: ObjectStore, mlflow: Any | None = None, prefix: str = "audit") -> None:
        self.store = store
        self.anchor = MlflowAnchor(mlflow) if mlflow is not None else None
        self.prefix = prefix.strip("/")

    # --- writing ---------------------------------------------------------------------------
    def _key(self, model_name: str, sequence: int, kind: str) -> str:
        return f"{self.prefix}/{model_name}/{sequence:010d}-{kind}.jsonl"

    def _adopt_announced(self, model_name: str, head: ChainHead, pending: ChainHead | None) -> ChainHead:
        """A writer that stored a record and died before moving the head leaves that record at
        head+1, announced in MLflow (``AUDIT_PENDING_TAG``) with its digest: adopt it, so the next
        append does not fork the chain. Only the announced bytes are adopted: a record linked
        to the head but written straight into S3 (by whoever holds a key there) never is."""
        if pending is None or pending.sequence != head.sequence + 1:
            return head
        prefix = self.store.uri(f"{self.prefix}/{model_name}/{pending.sequence:010d}-")
        for key in self.store.list_keys(prefix):
            data = self.store.get_bytes(self.store.uri(key))
            if record_digest(data) != pending.digest:
                continue
            try:
                stored = ApprovalRecord.model_validate_json(data)
            except ValidationError:
                return head
            if stored.previous_digest == head.digest and stored.sequence == pending.sequence:
                return pending
        return head

    def append(self, record: ApprovalRecord) -> str:
        """Chain ``record`` after the model's head, write it once, then move the head."""
        if self.anchor is None:
            raise RuntimeError("AuditLog.append needs the MLflow client that anchors the chain")
        head, pending = self.anchor.read_both(record.model_name)
        head = self._adopt_announced(record.model_name, head or GENESIS_HEAD, pending)
        chained = record.model_copy(update={"sequence": head.sequence + 1, "previous_digest": head.digest})
        data = (chained.model_dump_json() + "\n").encode()
        written = ChainHead(chained.sequence, record_digest(data))
        uri = self.store.uri(self._key(record.model_name, chained.sequence, record.kind))
        if self.store.exists(uri):
            # An object the anchor does not vouch for sits where this record goes (written into S3
            # behind Tuneline's back, or by a writer that raced this one): never overwrite it, and
            # never let it block the log either; the head tells the two apart.
            uri = self.store.uri(self._key(record.model_name, chained.sequence, f"{record.kind}-{written.digest[:12]}"))
        self.anchor.announce(record.model_name, written)
        self.store.put_bytes(uri, data, "application/jsonl")
        self.anchor.write(record.model_name, written)
        return uri

    # --- reading ---------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        names = set()
        for key in self.store.list_keys(self.store.uri(f"{self.prefix}/")):
            name = key.removeprefix(f"{self.prefix}/").split("/", 1)[0]
            if name and not name.startswith("_"):
                names.add(name)
        return sorted(names)

    def entries(self, model_name: str) -> list[AuditEntry]:
        """Every object of the model's log in key order, readable or not (never raises on content)."""
        out = []
        prefix = self.store.uri(f"{self.prefix}/{model_name}/")
        for key in sorted(self.store.list_keys(prefix)):
            data = self.store.get_bytes(self.store.uri(key))
            entry = AuditEntry(key=key, digest=record_digest(data))
            try:
                entry.record = ApprovalRecord.model_validate_json(data)
            except ValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ())) or "record"
                entry.error = f"not a valid audit record ({where}: {first.get('msg', exc)})"
            else:
                if entry.record.model_name != model_name:
                    entry.error = f"record names model {entry.record.model_name!r} but is stored under {model_name!r}"
            out.append(entry)
        return out

    def records(self, model_name: str | None = None) -> list[ApprovalRecord]:
        """The readable records (of one model, or of all), in chain order; unreadable objects are
        skipped here and reported by ``verify``. Whether the chain vouches for each: ``listing``."""
        names = [model_name] if model_name else self.model_names()
        return [e.record for e in self._readable(names, self.entries) if e.record is not None]

    def listing(self, model_names: Iterable[str]) -> list[AuditEntry]:
        """The readable records' entries of these chains, ordered as ``records``, each with
        ``trusted`` set: whether the anchored chain vouches for its bytes (``verify`` says why not)."""
        if self.anchor is None:
            raise RuntimeError("AuditLog.listing needs the MLflow client that anchors the chain")
        names = list(model_names)
        return self._readable(names, lambda name: self._walk(name)[2])

    @staticmethod
    def _readable(names: list[str], entries_of: Any) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        for name in names:
            readable = [e for e in entries_of(name) if e.record is not None and e.error is None]
            out.extend(sorted(readable, key=lambda e: (e.record.sequence, e.record.recorded_at)))
        if len(names) > 1:
            out.sort(key=lambda e: e.record.recorded_at)
        return out

    def unreadable(self, model_name: str | None = None) -> list[AuditEntry]:
        names = [model_name] if model_name else self.model_names()
        return [e for name in names for e in self.entries(name) if e.error is not None]

    # --- verifying -------------------------------------------------------------------------
    def verify(self, model_names: Iterable[str] | None = None) -> list[AuditProblem]:
        """Check every chain against its anchor; one problem per broken record, none when intact."""
        if self.anchor is None:
            raise RuntimeError("AuditLog.verify needs the MLflow client that anchors the chain")
        problems: list[AuditProblem] = []
        for name in model_names if model_names is not None else self.model_names():
            problems.extend(self._verify_model(name))
        return problems

    def _verify_model(self, name: str) -> list[AuditProblem]:
        return self._walk(name)[0]

    def trusted_records(self, model_name: str) -> list[ApprovalRecord]:
        """The records whose bytes the anchored chain links to, oldest first: what a decision
        (may this version be champion?) can rest on. A record inserted beside the chain, rewritten,
        or only reachable past a deleted one is left out; ``verify`` names each."""
        if self.anchor is None:
            raise RuntimeError("AuditLog.trusted_records needs the MLflow client that anchors the chain")
        trusted = self._walk(model_name)[1]
        return sorted((e.record for e in trusted if e.record is not None), key=lambda r: r.sequence)

    def _walk(self, name: str) -> tuple[list[AuditProblem], list[AuditEntry], list[AuditEntry]]:
        """Walk the chain back from the anchored head: every record on it must link to the one
        before; an object not on it was inserted, a sequence with no object on it was deleted.
        Returns the problems, the entries the chain vouches for (found by the digest linked to),
        and every entry, each marked ``trusted`` or not."""
        problems: list[AuditProblem] = []
        vouched: list[AuditEntry] = []
        valid: list[AuditEntry] = []
        entries = self.entries(name)
        for entry in entries:
            if entry.error is not None or entry.record is None:
                problems.append(AuditProblem(name, entry.key, entry.error or "unreadable"))
            else:
                valid.append(entry)
        by_digest = {e.digest: e for e in valid}

        def at(sequence: int) -> list[AuditEntry]:
            return [e for e in valid if e.record is not None and e.record.sequence == sequence]

        head = pending = None
        try:
            head, pending = self.anchor.read_both(name) if self.anchor else (None, None)
        except ValueError as exc:
            problems.append(AuditProblem(name, None, f"the MLflow anchor tag {AUDIT_HEAD_TAG} is {exc}"))
        else:
            if head is None and valid:
                problems.append(AuditProblem(
                    name, None, f"the registered model has no {AUDIT_HEAD_TAG} tag though the log has {len(valid)} records"
                ))
        # No anchor vouches for nothing: a chain whose head is not in MLflow could have been
        # written by anyone holding an S3 key. Only a record announced there is adopted.
        head = self._adopt_announced(name, head or GENESIS_HEAD, pending)

        on_chain: set[str] = set()
        sequence, digest = head.sequence, head.digest
        linked_from = "the anchor in MLflow"
        while sequence > 0:
            entry = by_digest.get(digest) if digest is not None else None
            if entry is not None and entry.record is not None and entry.record.sequence == sequence:
                vouched.append(entry)
            elif same := at(sequence):
                entry = same[0]
                if digest is not None:
                    problems.append(AuditProblem(
                        name, entry.key, f"record {sequence} was rewritten: its bytes are not the ones {linked_from} links to"
                    ))
            else:
                problems.append(AuditProblem(
                    name, self._key(name, sequence, "*"), f"record {sequence} is missing ({linked_from} links to it): it was deleted"
                ))
                sequence, digest, linked_from = sequence - 1, None, f"record {sequence + 1} (deleted)"
                continue
            assert entry.record is not None
            on_chain.add(entry.key)
            if not entry.key.rsplit("/", 1)[-1].startswith(f"{sequence:010d}-"):
                problems.append(AuditProblem(name, entry.key, f"stored under a key that does not match its sequence {sequence}"))
            sequence, digest, linked_from = sequence - 1, entry.record.previous_digest, f"record {sequence}"
        if digest not in (None, GENESIS):
            problems.append(AuditProblem(name, None, "the first record does not start the chain (its previous_digest is not GENESIS)"))
        for entry in valid:
            if entry.key not in on_chain and entry.record is not None:
                where = "after the anchored head" if entry.record.sequence > head.sequence else "beside the chain"
                problems.append(AuditProblem(
                    name, entry.key, f"not on the chain ({where}, claims sequence {entry.record.sequence}): an inserted record"
                ))
        trusted = {e.key for e in vouched}
        for entry in entries:
            entry.trusted = entry.key in trusted
        return problems, vouched, entries


def problems_as_json(problems: list[AuditProblem]) -> list[dict[str, Any]]:
    return [{"model": p.model_name, "key": p.key, "problem": p.problem} for p in problems]


_CHAMPION = "champion"
_APPROVED_TAG = "tuneline.approved"
_MODEL_URI_TAG = "tuneline.model_uri"


def registry_drift(log: AuditLog, client: Any, model_name: str) -> list[AuditProblem]:
    """Registry state no audit record explains: a champion alias Tuneline did not set, or a version
    tagged approved that no approval or promotion record covers (set through the MLflow API)."""
    records = log.records(model_name)
    problems = []
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return [AuditProblem(model_name, None, "the log has records but the registered model does not exist")] if records else []
        raise
    moves = [r for r in records if r.kind in ("promotion", "rollback") and r.new_champion]
    expected = moves[-1].new_champion if moves else None
    actual = (model.aliases or {}).get(_CHAMPION)
    actual = str(actual) if actual is not None else None
    if actual != expected:
        problems.append(AuditProblem(
            model_name, None,
            f"alias 'champion' points to version {actual}, but the audit log's last promotion or rollback "
            f"made it {expected}: the alias was changed outside Tuneline",
        ))
    approved_weights = {r.candidate_uri for r in records if r.kind == "approval" and r.approved and r.candidate_uri}
    promoted = {r.new_champion for r in moves}
    for version in client.search_model_versions(f"name = '{model_name}'"):
        tags = version.tags or {}
        if tags.get(_APPROVED_TAG) == "true" and str(version.version) not in promoted and tags.get(_MODEL_URI_TAG) not in approved_weights:
            problems.append(AuditProblem(
                model_name, None,
                f"version {version.version} is tagged {_APPROVED_TAG}=true but no approval record covers it: "
                "the tag was set outside Tuneline",
            ))
    return problems
