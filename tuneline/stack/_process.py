"""Detached service processes: start, wait for health, stop — only the ones we started.

A service started here runs in its own session (so that closing the terminal or ending the
``tuneline stack up`` command leaves it running), writes stdout/stderr to ``<home>/logs/<name>.log``
and is recorded in ``<home>/run/<name>.pid`` with its pid and creation time. ``stop`` signals a pid
only when the process with that pid was created at the recorded time and runs the recorded
command, so a pid reused by an unrelated process after a reboot or crash is never killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict

from tuneline.errors import StackError

__all__ = [
    "ProcessRecord",
    "log_path",
    "log_tail",
    "pid_path",
    "running_record",
    "start_detached",
    "stop",
    "wait_healthy",
]

_LOG_TAIL_LINES = 30


class ProcessRecord(BaseModel):
    """What ``<home>/run/<name>.pid`` holds: enough to recognise our own process later."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int
    create_time: float
    argv: list[str]


def pid_path(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.pid"


def log_path(home: Path, name: str) -> Path:
    return home / "logs" / f"{name}.log"


def log_tail(home: Path, name: str, lines: int = _LOG_TAIL_LINES) -> str:
    path = log_path(home, name)
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def start_detached(
    home: Path, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> ProcessRecord:
    """Start ``argv`` in its own session, logging to the service's log file; record its pid."""
    log = log_path(home, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file = pid_path(home, name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}: {argv[0]}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StackError(f"{name}: could not start {argv[0]!r}: {exc}") from exc
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess as exc:
        proc.wait()
        raise StackError(
            f"{name} exited at once (status {proc.returncode}); log tail:\n{log_tail(home, name)}"
        ) from exc
    record = ProcessRecord(pid=proc.pid, create_time=create_time, argv=list(argv))
    # Written atomically so that a concurrent ``status`` never reads half a record.
    tmp = pid_file.with_suffix(".pid.tmp")
    tmp.write_text(record.model_dump_json(), encoding="utf-8")
    tmp.replace(pid_file)
    return record


def _read_record(home: Path, name: str) -> ProcessRecord | None:
    path = pid_path(home, name)
    try:
        return ProcessRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # Not a file we wrote (or a torn one): never act on it.
        return None


def _process_if_ours(record: ProcessRecord) -> psutil.Process | None:
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.5:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(record.pid)
            return None
        cmdline = proc.cmdline()
        # A script started through its shebang shows up as [interpreter, script, args...].
        if cmdline != record.argv and cmdline[1:] != record.argv:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process (tests start services as children)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _exit_status(pid: int) -> str | None:
    """None while ``pid`` runs; otherwise how it ended (exact only for a child of ours)."""
    try:
        waited, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (a parallel ``up`` started it): all we can tell is whether it lives.
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        return None if alive else "exited"
    if waited == 0:
        return None
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def running_record(home: Path, name: str) -> ProcessRecord | None:
    """The pid record of service ``name`` if the process it names is alive and still ours."""
    record = _read_record(home, name)
    if record is None or _process_if_ours(record) is None:
        return None
    return record


def wait_healthy(
    home: Path,
    name: str,
    record: ProcessRecord,
    is_healthy: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.25,
) -> float:
    """Poll ``is_healthy`` until it is true; return the seconds waited.

    Raises ``StackError`` with the log tail when the process dies or the deadline passes (and
    stops the process in the latter case, so that no half-started service is left behind).
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        exit_status = _exit_status(record.pid)
        if exit_status is not None:
            pid_path(home, name).unlink(missing_ok=True)
            raise StackError(
                f"{name} exited during startup ({exit_status}); log tail ({log_path(home, name)}):\n"
                f"{log_tail(home, name)}"
            )
        if is_healthy():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            stop(home, name)
            raise StackError(
                f"{name} was not healthy within {timeout_s:.0f} s; log tail ({log_path(home, name)}):\n"
                f"{log_tail(home, name)}"
            )
        time.sleep(interval_s)


def stop(home: Path, name: str, grace_s: float = 10.0) -> bool:
    """Stop service ``name`` if its pid file names a live process of ours; True if one was stopped.

    SIGTERM goes to the process group (the service's own session: MLflow and Prefect run worker
    children), then SIGKILL after ``grace_s``. A stale pid file is removed.
    """
    record = _read_record(home, name)
    if record is None:
        return False
    proc = _process_if_ours(record)
    if proc is None:
        pid_path(home, name).unlink(missing_ok=True)
        return False
    children = proc.children(recursive=True)
    _signal_group(record.pid, signal.SIGTERM)
    gone, alive = psutil.wait_procs([proc, *children], timeout=grace_s, callback=lambda p: _reap(p.pid))
    if alive:
        _signal_group(record.pid, signal.SIGKILL)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5, callback=lambda p: _reap(p.pid))
    _reap(record.pid)
    pid_path(home, name).unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The service leads its own session (start_new_session), so its pgid is its pid; we only
    # signal that group, never a group we did not create.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
