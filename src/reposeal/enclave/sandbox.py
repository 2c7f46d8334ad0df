"""Run one job's worker in a fresh bubblewrap sandbox.

No network, no other processes, a read-only system and job, a private /tmp, one writable
output folder, all capabilities dropped, resource limits, killed on timeout. Where
bubblewrap cannot run, callers must opt out explicitly (``--insecure-no-sandbox``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reposeal
from reposeal.errors import ReposealError, ToolMissingError

DEFAULT_TIMEOUT = 120.0
MEMORY_LIMIT = 8 << 30  # address space; Rust and OpenSSL reserve more than they use
OUTPUT_LIMIT = 16 << 20
INNER_TMP = "/tmp"  # noqa: S108  (a fresh, private tmpfs inside the sandbox)


@dataclass(frozen=True)
class WorkerResult:
    decision: dict[str, Any]  # decision, reasons, evidence used, hashes, ...
    records: bytes  # canonical JSON list of the package records derived from the bytes


class SandboxError(ReposealError):
    """The worker could not be run or did not finish (timeout, crash, limits)."""


def _limits() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _python_paths() -> list[str]:
    """What the worker's interpreter needs to see: the venv, its base Python, our code."""
    code = Path(reposeal.__file__).resolve().parents[1]
    paths = {sys.prefix, sys.base_prefix, str(code), os.path.realpath(sys.executable)}
    return sorted(p for p in paths if not p.startswith(("/usr", "/lib", "/bin")))


def bwrap_command(job: Path, out: Path, extra: dict[str, Path] | None = None) -> list[str]:
    """``extra``: sub-folder of /job -> host folder, bound read-only (packages, evidence)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ToolMissingError("bubblewrap (bwrap) is not installed (Debian: bubblewrap)")
    cmd = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop",
        "ALL",
    ]
    for system in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
        if Path(system).exists():
            cmd += ["--ro-bind", system, system]
    # the private /tmp first: a bind below /tmp placed before it would be hidden by it
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", INNER_TMP]
    for p in _python_paths():  # our interpreter and code may live anywhere, /tmp included
        cmd += ["--ro-bind", p, p]
    cmd += [
        "--ro-bind",
        str(job),
        "/job",
        "--bind",
        str(out),
        "/out",
        *[
            a
            for sub, host in (extra or {}).items()
            for a in ("--ro-bind", str(host), f"/job/{sub}")
        ],
        "--setenv",
        "HOME",
        INNER_TMP,
        "--setenv",
        "PYTHONDONTWRITEBYTECODE",
        "1",
        "--chdir",
        INNER_TMP,
    ]
    return cmd


def sandbox_works() -> bool:
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            probe = [*bwrap_command(Path(tmp), Path(tmp)), "/bin/true"]
            return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (ReposealError, OSError, subprocess.TimeoutExpired):
        return False


def run_worker(
    job: Path,
    out: Path,
    *,
    extra: dict[str, Path] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    insecure_no_sandbox: bool = False,
) -> WorkerResult:
    """Run the worker on ``job`` (plus ``extra`` folders); return its decision and records."""
    worker = [sys.executable, "-I", "-m", "reposeal.enclave.worker"]
    for sub in extra or {}:
        (job / sub).mkdir(exist_ok=True)  # the mount point (or, unsandboxed, a link)
    if insecure_no_sandbox:
        for sub, host in (extra or {}).items():
            (job / sub).rmdir()
            (job / sub).symlink_to(host.resolve())
        cmd = [*worker, str(job), str(out)]
    else:
        cmd = [*bwrap_command(job, out, extra), *worker, "/job", "/out"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, preexec_fn=_limits, check=False
        )
    except subprocess.TimeoutExpired:
        raise SandboxError(
            f"the worker did not finish within {timeout:.0f} s and was killed"
        ) from None
    result = out / "decision.json"
    if proc.returncode != 0 or not result.exists():
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise SandboxError(
            f"the worker failed (exit {proc.returncode}): {' | '.join(tail) or 'no output'}"
        )
    try:
        doc: dict[str, Any] = json.loads(result.read_bytes())
        records = (out / "records.json").read_bytes()
    except (OSError, ValueError):
        raise SandboxError("the worker wrote an unreadable decision") from None
    return WorkerResult(doc, records)
