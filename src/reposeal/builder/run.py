"""`reposeal builder run`: take build jobs from the source machine, build each in a fresh
bubblewrap sandbox, attest and upload what came out.

Per job: a new directory gets the commit's tree; sources are fetched in a sandbox that may
reach the network (`makepkg --verifysource`), then the build runs in one that may not,
with ``SOURCE_DATE_EPOCH`` from the commit, as an unprivileged user, seeing the system
read-only and nothing of this machine's keys or other work. For each package made, the
builder signs a build statement (the file's sha256, the .BUILDINFO's) and uploads package
and statement to the repo machine; it reports to the source machine what it made, file by
file inside each package, so builders that disagree are shown where.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from reposeal import logs
from reposeal.alpm import compression
from reposeal.alpm.package import read_package
from reposeal.builder.makepkg import DEFAULT_BUILD_USER, BuildError, ensure_build_user
from reposeal.errors import ReposealError, ToolMissingError
from reposeal.evidence.statements import Build, to_bytes
from reposeal.openpgp.signer import Signer
from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.protocol.buildjobs import BuildJob, BuildJobError
from reposeal.protocol.source_client import SourceClient

DEFAULT_COMMAND = "makepkg --nodeps --force --noconfirm --noprogressbar"
FETCH_COMMAND = "makepkg --verifysource --nodeps --noconfirm"
SYSTEM = ("/usr", "/etc")
LINKS = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}
BUILD_TIMEOUT = 3600
BUILD_PATH = "/build"  # where the job's folder is seen inside the sandbox


def sandbox(workdir: Path, *, network: bool, env: dict[str, str]) -> list[str]:
    """bubblewrap around a command: the system read-only, ``workdir`` writable as /build,
    private /tmp, no other file of this machine, new namespaces (with ``network`` the
    network's)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ToolMissingError("bubblewrap (bwrap) is not installed (Debian: bubblewrap)")
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    if network:
        cmd.append("--share-net")
    for path in SYSTEM:
        cmd += ["--ro-bind", path, path]
    for link, target in LINKS.items():
        if os.path.islink(link):
            cmd += ["--symlink", target, link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", link, link]
    private = ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]  # noqa: S108  (fresh, in the sandbox)
    cmd += ["--dev", "/dev", "--proc", "/proc", *private]
    # the same path for every build: .BUILDINFO records it, reproducible builds need it equal
    cmd += ["--bind", str(workdir), BUILD_PATH, "--chdir", BUILD_PATH]
    base = {"PATH": "/usr/bin:/bin", "HOME": BUILD_PATH, "LANG": "C.UTF-8"}
    for key, value in (base | env).items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--"]


def _as_user(cmd: list[str], user: str) -> list[str]:
    """Run as the unprivileged build user when we are root (makepkg refuses root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", ensure_build_user(user), "--", *cmd]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).decode(errors="replace").strip()[-2000:]
        raise BuildError(f"{what} failed ({proc.returncode}):\n{tail}")


def unpack(tar: bytes, into: Path) -> None:
    """The source tree, from the source machine: regular files and folders only, nothing
    outside ``into``. Done by hand: Debian 12's Python 3.11.2 has no extraction filters."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
            members = t.getmembers()
            for m in members:  # git archive never writes these: refuse, do not repair
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise tarfile.TarError(f"{m.name!r} points outside the tree")
                if not (m.isfile() or m.isdir()):
                    raise tarfile.TarError(f"{m.name!r} is not a regular file or folder")
            for m in members:
                target = into / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = t.extractfile(m)
                if source is None:
                    raise tarfile.TarError(f"{m.name!r} cannot be read")
                with source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, 0o755 if m.mode & 0o111 else 0o644)
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(f"the source tree does not unpack: {exc}") from None


def contents(path: Path) -> dict[str, str]:
    """Every member of a package: path -> sha256 of its content, "dir" or "link:TARGET"
    (what two builders' packages are compared by)."""
    out: dict[str, str] = {}
    with open(path, "rb") as raw:
        kind = compression.detect(raw.read(263))
        raw.seek(0)
        stream = compression.open_stream(raw, kind)
        with tarfile.open(fileobj=stream, mode="r|") as t:  # type: ignore[call-overload]
            for m in t:
                if m.isdir():
                    out[m.name] = "dir"
                elif m.issym() or m.islnk():
                    out[m.name] = f"link:{m.linkname}"
                elif m.isfile():
                    h = hashlib.sha256()
                    f = t.extractfile(m)
                    if f is None:
                        raise BuildError(f"{m.name}: a file member with no data")
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                    out[m.name] = h.hexdigest()
                else:
                    out[m.name] = f"type:{m.type!r}"
    return out


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str
    statement: bytes
    signature: bytes
    contents: dict[str, str]


def build_job(
    job: BuildJob,
    tree: bytes,
    workroot: Path,
    signer: Signer,
    *,
    command: str = DEFAULT_COMMAND,
    user: str = DEFAULT_BUILD_USER,
    fetch: bool = True,
) -> tuple[list[Built], Path]:
    """Build one job in a fresh directory under ``workroot``; the packages, attested, and
    the directory (the caller removes it once the packages are uploaded)."""
    workroot.mkdir(parents=True, exist_ok=True)
    os.chmod(workroot, 0o755)  # noqa: S103  (the build user must reach its folder)
    work = Path(tempfile.mkdtemp(prefix=f"{job.pkgbase}-", dir=workroot))
    os.chmod(work, 0o755)  # noqa: S103
    unpack(tree, work)
    if os.geteuid() == 0:
        uid = ensure_build_user(user)
        for p in [work, *work.rglob("*")]:
            shutil.chown(p, uid)
    env = {"SOURCE_DATE_EPOCH": str(job.source_date_epoch), "PKGEXT": ".pkg.tar.zst"}
    if fetch:
        _run(_as_user([*sandbox(work, network=True, env=env), *shlex.split(FETCH_COMMAND)], user),
             "fetching the sources")  # fmt: skip
    _run(
        _as_user([*sandbox(work, network=False, env=env), *shlex.split(command)], user), "the build"
    )
    built = []
    for path in sorted(work.glob("*.pkg.tar*")):
        if path.name.endswith(".sig"):
            continue
        pkg = read_package(path)
        buildinfo = hashlib.sha256(pkg.buildinfo or b"").hexdigest()
        stmt = to_bytes(Build(job.pkgbase, job.commit, path.name, pkg.facts.sha256, buildinfo))
        sig = signer.sign_detached(io.BytesIO(stmt))
        built.append(Built(path, pkg.facts.sha256, stmt, sig, contents(path)))
    if not built:
        raise BuildError("the build made no package")
    return built, work


def run(
    source: SourceClient,
    repo: BridgeClient,
    signer: Signer,
    workroot: Path,
    *,
    command: str = DEFAULT_COMMAND,
    user: str = DEFAULT_BUILD_USER,
    once: bool = False,
    wait: float = 30.0,
    arch: str | None = None,
    metrics_file: Path | None = None,
) -> int:
    """Build jobs until interrupted (with ``once``: until there is none); return how many.
    ``arch``: this builder's architecture (it takes jobs of it, and those of none);
    ``metrics_file``: where to keep its metrics after every job (it opens no port)."""
    from reposeal.metrics import Metrics

    metrics = Metrics("builder")

    def count(outcome: str, seconds: float) -> None:
        metrics.job("build", outcome, seconds)
        if metrics_file is not None:
            try:
                metrics.write(metrics_file)
            except OSError as exc:  # metrics never stop a build
                _say(f"metrics not written to {metrics_file}: {exc.strerror or exc}")

    done = 0
    source.release_builds()
    while True:
        try:
            job = source.take_build(0 if once else wait, arch)
        except BuildJobError as exc:  # held for this builder until its lease runs out
            _say(exc.message)
            count("failed", 0.0)
            if once:
                raise
            continue
        except BridgeError as exc:
            if once:
                raise
            _say(f"source machine: {exc.message}; retrying in 5 s")
            time.sleep(5)
            continue
        if job is None:
            if once:
                return done
            continue
        started = time.monotonic()
        work = None
        try:
            if arch and job.arch and job.arch != arch:  # (the source machine filters)
                raise BuildError(f"{job.id} is for {job.arch}, this builder is {arch}")
            _say(f"building {job.pkgbase} {job.commit[:12]} for {job.repo} ({job.id})")
            tree = source.build_source(job.id)
            built, work = build_job(job, tree, workroot, signer, command=command, user=user)
            differences = _with_backoff(
                functools.partial(_deliver, repo, source, job.id, built),
                tries=1 if once else 6,
            )
        except ReposealError as exc:
            _say(f"{job.id}: {exc}")  # the lease runs out; a later round tries again
            count("failed", time.monotonic() - started)
            if once:
                raise
            continue
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
        names = ", ".join(f"{b.path.name} {b.sha256[:12]}" for b in built)
        _say(f"built {names} in {time.monotonic() - started:.1f} s; uploaded and attested")
        for line in differences:
            _say(f"DISAGREEMENT {line}")
        count("disagreed" if differences else "built", time.monotonic() - started)
        done += 1


T = TypeVar("T")


def _deliver(
    repo: BridgeClient, source: SourceClient, job_id: str, built: list[Built]
) -> list[str]:
    """Upload the packages and their statements, then report the contents (the
    disagreements the source machine finds come back)."""
    for b in built:
        repo.upload_build(b.path, b.statement, b.signature)
    files = {b.path.name: {"sha256": b.sha256, "contents": b.contents} for b in built}
    return source.report(job_id, {"files": files})


def _with_backoff(action: Callable[[], T], tries: int) -> T:
    """``action`` again after 1, 2, 4... seconds while the machines cannot be reached: a
    finished build is not thrown away for a dropped connection (uploads are idempotent)."""
    for attempt in range(tries):
        try:
            return action()
        except BridgeError as exc:
            if attempt == tries - 1:
                raise
            _say(f"{exc.message}; trying again in {2**attempt} s")
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _say(message: str) -> None:
    logs.info("builder", message)
