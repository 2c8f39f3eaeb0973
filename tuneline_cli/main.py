"""Tuneline: run the lifecycle or any stage, manage the local stack, approve, roll back, audit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from tuneline.config import ApprovalMode, Target, load_run_config
from tuneline.errors import ConfigError, NotFoundError, TunelineError
from tuneline.settings import Settings, get_settings
from tuneline_cli.failures import (
    CleanErrorsGroup,
    enable_debug,
    one_line,
    quiet_prefect_console,
    quiet_third_parties,
)

# Errors become one line `error: ...` in CleanErrorsGroup (see tuneline_cli/failures.py), never a traceback.
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, cls=CleanErrorsGroup, pretty_exceptions_enable=False
)
stack_app = typer.Typer(no_args_is_help=True, help="The embedded local stack: SeaweedFS (S3), MLflow, Prefect.")
app.add_typer(stack_app, name="stack")
deployments_app = typer.Typer(no_args_is_help=True, help="prefect.yaml, generated from the reviewed files in deployments/.")
app.add_typer(deployments_app, name="deployments")
automations_app = typer.Typer(no_args_is_help=True, help="Notifications: Prefect automations for failed and paused runs.")
app.add_typer(automations_app, name="automations")


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tuneline {version('tuneline')}")
        except PackageNotFoundError:
            typer.echo("tuneline (not installed as a package)")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks, library warnings and progress bars (or TUNELINE_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print Tuneline's version and exit.", callback=_version_callback, is_eager=True),
    ] = False,
) -> None:
    """Tuneline: run the lifecycle or any stage, manage the local stack, approve, roll back, audit."""
    if debug:
        enable_debug()
    quiet_third_parties()


def _use_prefect(settings: Settings) -> None:
    """Point Prefect at the configured server before it is first imported."""
    os.environ.setdefault("PREFECT_API_URL", settings.prefect_api_url)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_UI_URL", settings.prefect_ui_url)
    from tuneline.stack import with_stack_credentials

    # The local stack's Prefect API needs its auth string (stack.env); Prefect reads it from here.
    for key, value in with_stack_credentials(settings).prefect_env().items():
        os.environ.setdefault(key, value)
    import prefect  # noqa: F401 - configures Prefect's logging, which quiet_prefect_console adjusts

    quiet_prefect_console()


def _fail(exc: Exception, code: int = 1) -> None:
    typer.secho(f"error: {one_line(str(exc))}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, default=str))


def _for_people(value: Any) -> str:
    """Floats to 4 significant digits (0.4028, 1234.6): enough to compare, short enough to read."""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


# --------------------------------------------------------------------------------------------
# stack
# --------------------------------------------------------------------------------------------
def _print_services(services: list[Any]) -> None:
    for s in services:
        mark = (
            typer.style("healthy", fg=typer.colors.GREEN)
            if s.healthy
            else typer.style("down", fg=typer.colors.RED)
        )
        auth = "  auth=basic" if s.auth else ""
        typer.echo(f"{s.name:<8} {mark:<18} {s.url:<32} pid={s.pid or '-'}{auth}  log={s.log_path}")
        if s.problem:
            typer.secho(f"         {s.problem}", fg=typer.colors.RED)


_INSECURE_WARNING = (
    "WARNING: the stack runs INSECURE (`tuneline stack up --insecure`): the MLflow and Prefect APIs accept "
    "anyone on this machine, and so do SeaweedFS's filer and volume ports. `tuneline stack down` then "
    "`tuneline stack up --secure` turns authentication back on."
)


@stack_app.command("up")
def stack_up(
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure/--secure",
            help="--insecure: no authentication on MLflow, Prefect or SeaweedFS's internal ports (said at every "
            "start). Remembered in stack.env; default: as last time, which is secure on a first start.",
        ),
    ] = None,
) -> None:
    """Start SeaweedFS, MLflow and Prefect (reusing any already healthy), authenticated unless --insecure."""
    from tuneline import stack

    settings = get_settings()
    if insecure is not None:
        settings = settings.model_copy(update={"stack_insecure": insecure})
    try:
        services = stack.up(settings)
    except TunelineError as exc:
        _fail(exc)
    _print_services(services)
    if stack.with_stack_credentials(settings).stack_insecure:
        typer.secho(_INSECURE_WARNING, err=True, fg=typer.colors.YELLOW)
    else:
        typer.echo("logins: `tuneline stack env` prints them (Prefect UI: PREFECT_API_AUTH_STRING; MLflow UI: "
                   "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)")


@stack_app.command("env")
def stack_env() -> None:
    """Print the stack's endpoints and credentials as shell exports: `eval "$(tuneline stack env)"`.

    For Prefect's and MLflow's own CLIs and UIs; the values are secrets, so print them only to a terminal
    or an eval.
    """
    import shlex

    from tuneline import stack

    settings = stack.with_stack_credentials(get_settings())
    exports = {**settings.prefect_env(), "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    if settings.mlflow_auth and settings.mlflow_password is not None:
        exports["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_username or "admin"
        exports["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_password.get_secret_value()
    for key, value in exports.items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services this stack started (by pid)."""
    from tuneline import stack

    _print_services(stack.down(get_settings()))


@stack_app.command("status")
def stack_status() -> None:
    """Show each service, its URL and health."""
    from tuneline import stack

    services = stack.status(get_settings())
    _print_services(services)
    if not all(s.healthy for s in services):
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------------
# the lifecycle
# --------------------------------------------------------------------------------------------
@app.command("run")
def run(
    config_path: Annotated[Path, typer.Argument(help="Run config YAML.", exists=True, dir_okay=False)],
    approval: Annotated[ApprovalMode | None, typer.Option(help="Override the policy's approval mode.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Run the whole lifecycle (prepare, tune, evaluate, approve, promote) as a Prefect flow."""
    settings = get_settings()
    try:
        config = load_run_config(config_path)
        _preflight(config)
    except TunelineError as exc:
        _fail(exc, 2)
    _use_prefect(settings)
    from flows.lifecycle import customize_model

    try:
        summary = customize_model(config, approval)
    except TunelineError as exc:
        _fail(exc)
    if as_json:
        _emit_json(summary.model_dump(mode="json"))
        return
    _print_summary(summary, settings)


def _print_summary(summary: Any, settings: Settings) -> None:
    d, v = summary.dataset, summary.version
    typer.echo("")
    outcome = (
        "nothing new to decide" if summary.decision.unchanged
        else "promoted" if v.promoted else "rejected, aliases unchanged" if not summary.decision.approved
        else "approved, not promoted"
    )
    typer.secho(f"Tuneline lifecycle for {summary.model_name}: {outcome}", bold=True)
    typer.echo(f"  Prefect flow run : {summary.flow_run_url}")
    typer.echo(f"  MLflow run       : {summary.mlflow_run_url}")
    typer.echo(f"  Registered model : {summary.model_version_url}")
    typer.echo(f"  Dataset version  : {d.uri}  ({d.accepted} accepted, {d.rejected} rejected, {d.duplicates} duplicates)")
    typer.echo(f"  Model weights    : {summary.model.model_uri}")
    decision = summary.decision
    verdict = "UNCHANGED" if decision.unchanged else "APPROVED" if decision.approved else "REJECTED"
    typer.echo(f"  Decision         : {verdict} by {decision.decided_by}: {'; '.join(decision.reasons)}")
    standing = (
        f"previous champion: {v.previous_champion or 'none'}" if v.promoted
        else f"not promoted: the champion is unchanged, {f'v{v.champion}' if v.champion else 'none yet'}"
    )
    typer.echo(f"  Version          : v{v.version} aliases={v.aliases} ({standing})")
    typer.echo("  Metrics (before -> after):")
    for key, values in summary.metrics.items():
        before = values.get("champion", values.get("base"))
        after = values.get("candidate")
        label = "champion" if "champion" in values else "base"
        typer.echo(f"    {key:<32} {label} {before:.3f} -> candidate {after:.3f}")
    typer.echo(f"  S3 browse        : aws --endpoint-url {settings.s3_endpoint_url} s3 ls {d.uri}")


# --------------------------------------------------------------------------------------------
# approval, rollback, audit
# --------------------------------------------------------------------------------------------
def _resume(flow_run_id: str, decision: str, reviewer: str, comment: str, token: str = "") -> None:
    """Send the decision with the reviewer's token; exit 2 with the reason when the flow refuses it."""
    from tuneline_cli.governance import RefusedError, send_review

    _use_prefect(get_settings())
    try:
        typer.echo(send_review(flow_run_id, decision, reviewer, token, comment))
    except RefusedError as exc:
        _fail(Exception(f"{decision} refused: {exc}; the run is still waiting"), 2)
    except (RuntimeError, ValueError) as exc:
        _fail(exc, 2)
    except TimeoutError as exc:
        _fail(exc, 1)


def _paused_run_id(flow_run_id: str) -> str:
    """The paused run is the approve subflow; accept its parent's id too, as the UI shows both."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            raise NotFoundError(f"no such flow run {flow_run_id} on the Prefect server at {get_settings().prefect_api_url}") from None
        if run.state and run.state.type is StateType.PAUSED:
            return flow_run_id
        # subflows are linked through a task run in the parent
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            )
        )
    if not children:
        _fail(ValueError(f"flow run {flow_run_id} is not waiting for approval"))
    return str(children[0].id)


@app.command("approve")
def approve(
    flow_run_id: Annotated[UUID, typer.Argument(help="The waiting flow run (the lifecycle run or its approve subflow).")],
    reviewer: Annotated[str, typer.Option(help="Who approves; recorded in the audit log.")],
    token: Annotated[
        str,
        typer.Option(
            envvar="TUNELINE_REVIEWER_TOKEN", prompt="Reviewer token", hide_input=True,
            help="Your reviewer token (from `tuneline reviewers add`); asked for when not set.",
        ),
    ],
    comment: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "",
) -> None:
    """Approve a run that is waiting for a human decision (needs your reviewer token)."""
    _use_prefect(get_settings())
    _resume(_paused_run_id(str(flow_run_id)), "approve", reviewer, comment, token)


@app.command("reject")
def reject(
    flow_run_id: Annotated[UUID, typer.Argument(help="The waiting flow run (the lifecycle run or its approve subflow).")],
    reviewer: Annotated[str, typer.Option(help="Who rejects; recorded in the audit log.")],
    token: Annotated[
        str,
        typer.Option(
            envvar="TUNELINE_REVIEWER_TOKEN", prompt="Reviewer token", hide_input=True,
            help="Your reviewer token (from `tuneline reviewers add`); asked for when not set.",
        ),
    ],
    comment: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "",
) -> None:
    """Reject a run that is waiting for a human decision (needs your reviewer token)."""
    _use_prefect(get_settings())
    _resume(_paused_run_id(str(flow_run_id)), "reject", reviewer, comment, token)


@app.command("rollback")
def rollback(
    model_name: Annotated[str, typer.Argument(help="Registered model name.")],
    to_version: Annotated[str | None, typer.Option(help="Version to restore; default: alias 'previous'.")] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "manual rollback",
    actor: Annotated[str, typer.Option(help="Who rolls back; recorded in the audit log.")] = os.environ.get(
        "USER", "unknown"
    ),
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Restore a version no approval covers; --actor must be an enrolled reviewer "
            "whose token is in TUNELINE_REVIEWER_TOKEN. Audited as forced.",
        ),
    ] = False,
) -> None:
    """Move the champion alias back (to 'previous' by default) to an approved version, and record why."""
    settings = get_settings()
    _check_rollback_target(settings, model_name, to_version)
    _use_prefect(settings)
    from flows.rollback import rollback as rollback_flow

    try:
        ref = rollback_flow(model_name, to_version, actor, reason, force)
    except TunelineError as exc:
        _fail(exc, 2)
    typer.echo(f"{model_name}: champion is now v{ref.version} (was v{ref.previous_champion})")


def _check_rollback_target(settings: Settings, model_name: str, to_version: str | None) -> None:
    """Name a missing model or version before starting a flow (whose failure would print Prefect's logs)."""
    from mlflow.exceptions import MlflowException

    from tuneline.governance.registry import CHAMPION, PREVIOUS, ModelRegistry
    from tuneline.stages.context import StageContext
    from tuneline.storage.tracking import unreachable_as_service_error

    client = StageContext(settings).mlflow
    with unreachable_as_service_error():
        try:
            client.get_registered_model(model_name)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise NotFoundError(
                    f"no such model {model_name!r} in the MLflow registry at {settings.mlflow_tracking_uri}"
                ) from None
            raise
        if to_version is None and ModelRegistry(client).alias_version(model_name, PREVIOUS) is None:
            champion = ModelRegistry(client).alias_version(model_name, CHAMPION)
            now = f"its champion is v{champion.version}" if champion is not None else "it has no champion"
            raise NotFoundError(
                f"model {model_name!r} has no 'previous' version to roll back to ({now}); "
                f"pass --to-version N to choose one"
            )


@app.command("audit")
def audit(
    model: Annotated[str | None, typer.Option(help="Only this model's records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document: records, unreadable objects, problems.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Check each model's hash chain against its MLflow anchor, the registry's aliases "
            "and approved tags against the log, and every reviewer credential against its enrolment record; "
            "exit 1 naming every problem.",
        ),
    ] = False,
) -> None:
    """Print the audit log: every approval, refused attempt, promotion, rollback and reviewer
    enrolment; a record the anchored chain does not vouch for is marked OFF-CHAIN."""
    from tuneline_cli.governance import audit_report

    report = audit_report(get_settings(), model, verify)
    if as_json:
        _emit_json(report.as_json())
    else:
        for entry in report.entries:
            r = entry.record
            subject = f"reviewer {r.reviewer}" if r.kind == "enrolment" else f"{r.model_name} v{r.model_version or '-'}"
            decided = "" if r.approved is None else f" approved={r.approved}"
            line = (
                f"{r.recorded_at:%Y-%m-%d %H:%M:%S} #{r.sequence:<4} {r.kind:<16} {subject} "
                f"by {r.actor}{' (authenticated)' if r.authenticated else ''}{decided} {'; '.join(r.reasons)}"
            )
            if entry.trusted:
                typer.echo(line)
            else:
                typer.secho(f"{line}  [OFF-CHAIN {entry.key}]", fg=typer.colors.RED)
        if report.off_chain:
            typer.secho(
                f"{report.off_chain} record(s) marked OFF-CHAIN are not on the verified chain (forged, inserted, "
                "rewritten, or only reachable past a deleted record): nothing rests on them; run "
                "`tuneline audit --verify` for the reasons",
                err=True, fg=typer.colors.YELLOW,
            )
        for entry in report.unreadable:
            typer.secho(f"unreadable {entry.key}: {entry.error}", err=True, fg=typer.colors.YELLOW)
        for problem in report.problems or []:
            typer.secho(f"TAMPERED {problem}", err=True, fg=typer.colors.RED)
        if report.problems == []:
            typer.echo("verified: every chain is intact and matches its MLflow anchor; the registry matches the log")
    if report.problems:
        raise typer.Exit(1)


reviewers_app = typer.Typer(no_args_is_help=True, help="Reviewers: who may approve, each with a token stored hashed.")
app.add_typer(reviewers_app, name="reviewers")


@reviewers_app.command("add")
def reviewers_add(
    name: Annotated[str, typer.Argument(help="The reviewer's name, as policies list it in approval.reviewers.")],
    replace: Annotated[bool, typer.Option("--replace", help="Issue a new token, revoking the old one.")] = False,
) -> None:
    """Enrol a reviewer and print their token once (only its scrypt hash is stored); the enrolment
    is an audit record (who enrolled whom, when), without the token."""
    from tuneline.governance.reviewers import ReviewerRegistry
    from tuneline.stages.context import StageContext
    from tuneline.storage.tracking import unreachable_as_service_error

    ctx = StageContext(get_settings())
    try:
        with unreachable_as_service_error():
            token = ReviewerRegistry(ctx.store, ctx.mlflow).enroll(name, os.environ.get("USER", "unknown"), replace)
    except ConfigError as exc:
        _fail(exc, 2)
    typer.echo(f"reviewer {name} enrolled; their token (shown once, give it to them privately):")
    typer.echo(token)


# --------------------------------------------------------------------------------------------
# single stages
# --------------------------------------------------------------------------------------------
def _data_config(
    input_: str,
    format_: str,
    target: Target | None,
    kind: str | None = None,
    columns: str | None = None,
    extra_keys: str = "drop",
) -> Any:
    from tuneline.config import DataConfig

    mapping: dict[str, str] = {}
    for pair in (columns or "").split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in ("prompt", "completion", "system") or not value.strip():
            raise typer.BadParameter(
                f"{pair!r}: write --columns prompt=<column>,completion=<column>[,system=<column>]", param_hint="--columns"
            )
        mapping[key.strip()] = value.strip()
    return DataConfig(
        source=input_, format=format_, target=target, kind=kind, columns=mapping, extra_keys=extra_keys
    )


def _data_problem_json(problem: str) -> dict[str, Any]:
    """The validate/prepare JSON document when the input as a whole could not be read."""
    return {
        "total": 0, "accepted": 0, "rejected": 0, "duplicates": 0, "filtered": 0, "kinds": {}, "dropped_keys": {},
        "files_skipped": [], "errors": {}, "examples": {}, "problems": [problem],
    }


def _print_examples(summary: Any) -> None:
    """Counts, then each error code with up to 3 examples (file:line, field, what to do)."""
    s = summary
    typer.echo(f"{s.total} records: {s.accepted} accepted, {s.rejected} rejected, {s.duplicates} duplicates, "
               f"{s.filtered} filtered")
    if s.kinds:
        typer.echo("kinds: " + ", ".join(f"{k} {n}" for k, n in s.kinds.items()))
    if s.dropped_keys:
        typer.echo("dropped keys: " + ", ".join(f"{k} ({n})" for k, n in s.dropped_keys.items()))
    for skipped in s.files_skipped:
        typer.echo(f"skipped {skipped['file']}: {skipped['reason']}")
    for code, count in sorted(s.errors.items(), key=lambda kv: (-kv[1], kv[0])):
        typer.echo(f"{code}: {count} record(s)")
        for ex in s.examples.get(code, []):
            where = f"{ex['file']}:{ex['line']}" + (f" {ex['field']}" if ex.get("field") else "")
            typer.echo(f"  {where}: {ex['message']}")


def _data_exit(summary: Any, fail_on_reject: bool) -> None:
    """0 all usable, 1 some records rejected (2 with --fail-on-reject), 2 unusable."""
    if summary.problems:
        raise typer.Exit(2)
    if summary.rejected or summary.files_skipped:
        raise typer.Exit(2 if fail_on_reject else 1)


_KIND_HELP = (
    "Read every record as this kind: sft, preference, kto, rft, pretrain or prompt "
    "(prompts alone, for distillation; default: each record's own)."
)
_COLUMNS_HELP = "Column/key names, e.g. prompt=question,completion=answer[,system=instructions]."
_EXTRA_HELP = "Keys no format reads: drop (counted), keep (as metadata) or reject the record."
_FAIL_HELP = "Exit 2 (not 1) when any record is rejected or file skipped."


@app.command("validate")
def validate(
    input_: Annotated[str, typer.Option("--input", help="File, glob, directory or s3:// prefix.")],
    format_: Annotated[str, typer.Option("--format", help="Input record format, or auto to detect it per record.")] = "auto",
    target: Annotated[Target, typer.Option(help="Where the data will be tuned; its rules apply.")] = Target.LOCAL,
    kind: Annotated[str | None, typer.Option("--kind", help=_KIND_HELP)] = None,
    columns: Annotated[str | None, typer.Option("--columns", help=_COLUMNS_HELP)] = None,
    extra_keys: Annotated[str, typer.Option("--extra-keys", help=_EXTRA_HELP)] = "drop",
    fail_on_reject: Annotated[bool, typer.Option("--fail-on-reject", help=_FAIL_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON document.")] = False,
) -> None:
    """Check data against the target's rules without writing anything.

    Exit codes: 0 every record usable, 1 some rejected (2 with --fail-on-reject), 2 unusable."""
    from pydantic import ValidationError

    from tuneline.data.prepare import validate as validate_data
    from tuneline.storage.s3 import ObjectStore

    settings = get_settings()
    try:
        config = _data_config(input_, format_, target, kind, columns, extra_keys)
        store = ObjectStore(settings) if input_.startswith("s3://") else None
        summary = validate_data(config, target, store=store)
    except (TunelineError, ValidationError, typer.BadParameter) as exc:
        if not as_json:
            raise
        _emit_json(_data_problem_json(one_line(str(exc))))
        raise typer.Exit(2) from None
    if as_json:
        _emit_json(summary.to_json_dict())
    else:
        _print_examples(summary)
    if summary.problems and not as_json:
        typer.secho("unusable for " + target + ":\n" + "\n".join(summary.problems), err=True, fg=typer.colors.RED)
    _data_exit(summary, fail_on_reject)


@app.command("prepare")
def prepare(
    input_: Annotated[str, typer.Option("--input", help="File, glob, directory or s3:// prefix.")],
    format_: Annotated[str, typer.Option("--format", help="Input record format, or auto to detect it per record.")] = "auto",
    target: Annotated[Target, typer.Option(help="Where the data will be tuned; its rules apply.")] = Target.LOCAL,
    name: Annotated[str, typer.Option(help="Dataset name.")] = "dataset",
    kind: Annotated[str | None, typer.Option("--kind", help=_KIND_HELP)] = None,
    columns: Annotated[str | None, typer.Option("--columns", help=_COLUMNS_HELP)] = None,
    extra_keys: Annotated[str, typer.Option("--extra-keys", help=_EXTRA_HELP)] = "drop",
    fail_on_reject: Annotated[bool, typer.Option("--fail-on-reject", help=_FAIL_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON document.")] = False,
) -> None:
    """Validate, clean, split and write a versioned dataset to S3 (the rejected records too).

    Exit codes: 0 every record usable, 1 some rejected (2 with --fail-on-reject), 2 unusable."""
    from pydantic import ValidationError

    from tuneline.data.prepare import DatasetLimitError
    from tuneline.data.prepare import prepare as prepare_data
    from tuneline.storage.s3 import ObjectStore

    settings = get_settings()
    try:
        config = _data_config(input_, format_, target, kind, columns, extra_keys)
        prepared = prepare_data(config, target, name=name, store=ObjectStore(settings))
    except DatasetLimitError as exc:
        if as_json:
            _emit_json(exc.summary.to_json_dict())
        else:
            _print_examples(exc.summary)
            typer.secho("unusable for " + target + ":\n" + "\n".join(exc.summary.problems), err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    except (TunelineError, ValidationError, typer.BadParameter) as exc:
        if not as_json:
            raise
        _emit_json(_data_problem_json(one_line(str(exc))))
        raise typer.Exit(2) from None
    out = {**prepared.summary.to_json_dict(), "version": prepared.dataset.version, "uri": prepared.dataset.uri}
    if as_json:
        _emit_json(out)
    else:
        typer.echo(prepared.report_markdown)
        typer.echo(f"\nversion {prepared.dataset.version} at {prepared.dataset.uri}")
    _data_exit(prepared.summary, fail_on_reject)


# --------------------------------------------------------------------------------------------
# deployments and automations
# --------------------------------------------------------------------------------------------
@deployments_app.command("render")
def deployments_render(
    project: Annotated[Path, typer.Option(help="Project directory holding deployments/.", file_okay=False)] = Path("."),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; fail if prefect.yaml is out of date.")] = False,
) -> None:
    """Write prefect.yaml from deployments/*.yaml (validating every run config they name)."""
    from flows.deployments import render_prefect_yaml

    try:
        text = render_prefect_yaml(project)
    except TunelineError as exc:
        _fail(exc, 2)
    target = project / "prefect.yaml"
    if check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            _fail(ValueError(f"{target} is out of date with {project / 'deployments'}: run `tuneline deployments render`"))
        typer.echo(f"{target} is up to date")
        return
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")


@automations_app.command("apply")
def automations_apply() -> None:
    """Create or update the automations: notify when a run fails and when one waits for approval."""
    settings = get_settings()
    _use_prefect(settings)
    from flows.automations import apply_automations

    try:
        applied = apply_automations(settings)
    except ValueError as exc:
        _fail(exc)
    channel = (
        "Slack" if settings.notify_slack_webhook_url else "webhook" if settings.notify_webhook_url else "the notify flow's log"
    )
    for automation in applied:
        typer.echo(f"{automation.name}: {automation.id} -> {channel}")


def _dataset_version(dataset: str, config: Any, settings: Settings) -> Any:
    """A dataset version given as an s3:// URI or as a version id of the config's dataset."""
    from tuneline.data.versions import load_dataset_version, version_uri
    from tuneline.storage.s3 import ObjectStore

    store = ObjectStore(settings)
    uri = dataset if dataset.startswith("s3://") else version_uri(store, config.dataset_name, dataset)
    return load_dataset_version(store, uri)


def _tracked_stage(config: Any, settings: Settings, stage: str) -> Any:
    """A StageContext with its own MLflow run, for a stage run on its own."""
    from tuneline.stages.context import StageContext, start_lifecycle_run

    ctx = StageContext(settings)
    start_lifecycle_run(ctx, config, run_name=f"{config.name}-{stage}", tags={"tuneline.stage": stage})
    return ctx


@app.command("tune")
def tune(
    dataset: Annotated[
        str, typer.Option(help="Dataset version id, or its s3:// URI; with --dry-run, a local prepared JSONL or folder.")
    ],
    config_path: Annotated[Path, typer.Option("--config", help="Run config YAML.", exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Bedrock: print the request, cost and problems; send nothing.")
    ] = False,
    prices: Annotated[
        Path | None, typer.Option(help="With --dry-run: a JSON price table replacing Tuneline's dated one.")
    ] = None,
) -> None:
    """Run the tune stage alone on a prepared dataset version."""
    settings = get_settings()
    if dry_run:
        _tune_dry_run(config_path, Path(dataset), settings, prices, as_json)
        return
    try:
        config = load_run_config(config_path)
        _preflight(config)
        version = _dataset_version(dataset, config, settings)
    except TunelineError as exc:
        _fail(exc, 2)
    _use_prefect(settings)
    from flows.stages import tune as tune_flow
    from tuneline.stages.context import end_run

    ctx = _tracked_stage(config, settings, "tune")
    try:
        model = tune_flow(config, version, ctx.run_id)
    except TunelineError as exc:
        end_run(ctx, "FAILED")
        _fail(exc)
    end_run(ctx)
    out = {
        "backend": model.backend,
        "job_id": model.job_id,
        "status": "completed",
        "model_uri": model.model_uri,
        "mlflow_model_uri": model.mlflow_model_uri,
        "final_train_loss": model.final_train_loss,
        "final_validation_loss": model.final_validation_loss,
        "steps": model.steps,
        "tokens_per_second": model.tokens_per_second,
    }
    if as_json:
        _emit_json(out)
    else:
        for key, value in out.items():
            typer.echo(f"{key:<22} {_for_people(value)}")


def _preflight(config: Any) -> None:
    """Refuse a past-end-of-life Bedrock model before anything starts; warn for a legacy one."""
    from tuneline.stages.tune import check_model_lifecycle

    if warning := check_model_lifecycle(config):
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)


def _tune_dry_run(config_path: Path, dataset: Path, settings: Settings, prices: Path | None, as_json: bool) -> None:
    from tuneline.backends.registry import provider_for

    try:
        config = load_run_config(config_path)
        describe = getattr(provider_for(config), "dry_run", None)
        if describe is None:
            raise TunelineError(f"tune.backend {config.tune.backend!r} has no dry run; it runs locally, send nothing")
        result = describe(config, dataset, settings, prices=prices)
    except TunelineError as exc:
        _fail(exc, 2)
    out = {
        "request": result.request,
        "estimated_cost_usd": result.estimated_cost_usd,
        "problems": result.problems,
        "warnings": result.warnings,
        "records": result.records,
        "tokens": result.tokens,
        "epochs": result.epochs,
        "prices_as_of": result.prices_as_of.isoformat() if result.prices_as_of else None,
    }
    if as_json:
        _emit_json(out)
    else:
        typer.echo(json.dumps(result.request, indent=2))
        typer.echo(f"estimated_cost_usd {_for_people(result.estimated_cost_usd)} (prices of {out['prices_as_of']})")
        for warning in result.warnings:
            typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
        for problem in result.problems:
            typer.secho(f"problem: {problem}", err=True, fg=typer.colors.RED)
    if result.problems:
        raise typer.Exit(2)


@app.command("models")
def models(as_json: Annotated[bool, typer.Option("--json", help="One JSON line.")] = False) -> None:
    """List the Bedrock base models Tuneline knows: customization types, regions, lifecycle."""
    from tuneline.backends.registry import provider

    rows = provider("bedrock").models_table()  # type: ignore[attr-defined]
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        eol = f" end of life {row['end_of_life']}" if row["end_of_life"] else ""
        typer.echo(
            f"{row['model_id']:<46} {row['label']:<24} {row['lifecycle']}{eol}  "
            f"{', '.join(row['customization_types'])}"
            + (f"  teachers: {', '.join(row['teachers'])}" if row["teachers"] else "")
        )


@app.command("evaluate")
def evaluate(
    model: Annotated[str, typer.Option(help="The candidate: model directory or s3:// prefix.")],
    config_path: Annotated[Path, typer.Option("--config", help="Run config YAML.", exists=True, dir_okay=False)],
    dataset: Annotated[str, typer.Option(help="Dataset version (id or s3:// URI) whose test split is the task suite.")],
    against: Annotated[list[str], typer.Option(help="champion and/or base (default: both).")] = ["champion", "base"],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
) -> None:
    """Evaluate a model against the base and the current champion on the config's suites."""
    from tuneline.lineage import TrainedModel
    from tuneline.stages.context import end_run
    from tuneline.stages.evaluate import run_evaluate

    unknown = set(against) - {"champion", "base"}
    if unknown:
        _fail(ValueError(f"--against takes champion or base, not {', '.join(sorted(unknown))}"), 2)
    settings = get_settings()
    try:
        config = load_run_config(config_path)
        version = _dataset_version(dataset, config, settings)
    except TunelineError as exc:
        _fail(exc, 2)
    if "champion" not in against:
        config = config.model_copy(
            update={"evaluation": config.evaluation.model_copy(update={"compare_with_champion": False})}
        )
    candidate = TrainedModel(
        backend=config.tune.backend, job_id=f"adhoc-{Path(model).name or 'model'}", base_model=config.tune.base_model,
        model_uri=model,
    )
    ctx = _tracked_stage(config, settings, "evaluate")
    try:
        outcome = run_evaluate(ctx, config, version, candidate)
    except TunelineError as exc:
        end_run(ctx, "FAILED")
        _fail(exc)
    end_run(ctx)
    if as_json:
        # What the run's PII policy did to each suite file, as the markdown report says it.
        pii = {name: screened.model_dump(mode="json") for name, screened in outcome.suite_pii.items()}
        _emit_json({"suites": outcome.by_suite, "pii": pii, "chart_uri": outcome.chart_uri})
    else:
        typer.echo(outcome.report_markdown)


@app.command("history")
def history(
    model: Annotated[str | None, typer.Option(help="Model label, id, or id prefix.")] = None,
    suite: Annotated[str | None, typer.Option(help="Only this evaluation suite.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as one JSON array.")] = False,
) -> None:
    """Metrics over time per model version, from every run's per-example results in S3."""
    from tuneline.evaluation.history import metric_history
    from tuneline.storage.s3 import ObjectStore

    settings = get_settings()
    store = ObjectStore(settings)
    source = store.uri("evals/")
    rows = metric_history(source, model=model, suite=suite, store=store)
    if not rows and (model is not None or suite is not None):
        # An empty answer to a named filter is a typo far more often than a model never evaluated.
        everything = metric_history(source, store=store)
        for label, wanted, seen in (
            ("model", model, sorted({r["model"] for r in everything} | {r["model_id"] for r in everything})),
            ("suite", suite, sorted({r["suite"] for r in everything})),
        ):
            if wanted is not None and not any(s == wanted or s.startswith(wanted) for s in seen):
                raise NotFoundError(
                    f"no such {label} {wanted!r} in the evaluation history at {source} "
                    f"(known: {', '.join(seen[:10]) or 'none yet'})"
                )
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['evaluated_at']} {r['model']:<10} {r['model_id']:<40} {r['suite']:<8} {r['metric']:<20} "
                   f"{r['mean']:.4f} (n={r['n']})")


@app.command("generate")
def generate(
    model: Annotated[
        str,
        typer.Option(help="NAME@ALIAS (support-tickets@champion), NAME/VERSION, or weights with --config."),
    ],
    prompt: Annotated[
        str | None, typer.Option(help="One message to answer; without it, chat in the terminal (empty line ends).")
    ] = None,
    config_path: Annotated[
        Path | None,
        typer.Option("--config", help="Run config YAML: backend, base model and generation settings.", exists=True,
                     dir_okay=False),
    ] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest answer in tokens (default: the config's).")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 answers greedily (default: the config's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as one JSON document.")] = False,
) -> None:
    """Answer a prompt with a model, or chat with it, to feel the difference before approving."""
    from tuneline.config import GenerationConfig
    from tuneline.records import Message
    from tuneline_cli.generate import answer, open_generator, resolve_model

    settings = get_settings()
    config = load_run_config(config_path) if config_path else None
    generation = config.evaluation.generation if config else GenerationConfig()
    overrides = {k: v for k, v in {"max_new_tokens": max_new_tokens, "temperature": temperature}.items() if v is not None}
    generation = GenerationConfig.model_validate({**generation.model_dump(), **overrides, "batch_size": 1})
    target = resolve_model(model, settings, config)
    if prompt is None and not sys.stdin.isatty():
        raise TunelineError("--prompt is needed when not in a terminal (the chat loop reads from one)")
    generator = open_generator(target, settings, config)
    try:
        if prompt is not None:
            reply = answer(generator, [Message(role="user", content=prompt)], system, generation)
            if as_json:
                _emit_json({"model": target.label, "prompt": prompt, "answer": reply.text,
                            "latency_s": round(reply.latency_s, 4), "output_tokens": reply.output_tokens})
            else:
                typer.echo(reply.text)
            return
        typer.secho(f"chatting with {target.label}; an empty line ends", err=True, dim=True)
        history: list[Message] = []
        while True:
            line = typer.prompt("you", default="", show_default=False, prompt_suffix="> ")
            if not line.strip():
                return
            history.append(Message(role="user", content=line))
            reply = answer(generator, history, system, generation)
            history.append(Message(role="assistant", content=reply.text or " "))
            typer.echo(f"{target.label}> {reply.text}")
    finally:
        generator.close()


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except TunelineError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
