"""The whole pipeline on 127.0.0.1 with the real tools: a PKGBUILD change in a real git
repository, two maintainers approving with `reposeal approve`, two builders building it
with the real makepkg in fresh bubblewrap sandboxes, the repo machine publishing what the
enclave signs, the real pacman installing it. With one approval nothing is built; a builder
that injects a different file is outvoted, reported file by file, and nothing is
published; a key outside the maintainer keyring is refused."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.protocol.source_client import SourceClient, SourceError
from reposeal.tls import Issued, client_context, issue
from tests import tools
from tests.e2e.test_repo_cycle_e2e import enclave_run, init_enclave, pacman_trusting_the_enclave
from tests.e2e.test_repo_intake_e2e import as_role, start_service, world  # noqa: F401
from tests.policy.world import World

pytestmark = pytest.mark.e2e
AUTHOR = ["-c", "user.name=Contributor", "-c", "user.email=contributor@example.org"]


def git(repo: Path, *args: str, stamp: int = 1_700_000_000) -> str:
    env = os.environ | {"GIT_AUTHOR_DATE": f"@{stamp}", "GIT_COMMITTER_DATE": f"@{stamp}"}
    out = subprocess.run(
        ["git", "-C", str(repo), *AUTHOR, *args], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def commit_pkgbuild(repo: Path, spec: str, stamp: int) -> str:
    (repo / "PKGBUILD").write_text(tools.pkgbuild(*tools.PKGBUILDS[spec]))
    git(repo, "add", "PKGBUILD")
    git(repo, "commit", "-q", "-m", f"update to {spec}", stamp=stamp)
    return git(repo, "rev-parse", "HEAD")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args], capture_output=True, text=True, check=False
    )


class Pipeline:
    def __init__(self, tmp: Path, world: World, repo_url: str, certs: dict[str, Issued]):  # noqa: F811
        self.tmp, self.world, self.repo_url, self.certs = tmp, world, repo_url, certs
        ca = certs["ca"]
        roles = {"maint0": "maintainer", "maint1": "maintainer"}
        for name, role in (roles | {"builder0": "builder", "builder1": "builder"}).items():
            certs[name] = issue(ca, tmp / "pki", name, role)
        certs["source-server"] = issue(
            ca, tmp / "pki", "source-server", "source", server_ip="127.0.0.1"
        )
        self.git = tmp / "git" / "hello"
        self.git.mkdir(parents=True)
        git(self.git, "init", "-q", "-b", "main")
        self.workdir = Path(tempfile.mkdtemp(prefix="reposeal-builds-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.source_extra: list[str] = []  # more `source serve` options
        self.source_log = open(tmp / "source.log", "ab")  # noqa: SIM115 (kept open while it runs)

    def tls(self, name: str) -> list[str]:
        c = self.certs[name]
        return ["--cert", str(c.cert), "--key", str(c.key), "--ca", str(self.certs["ca"].cert)]

    def start_source(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = self.certs["source-server"]
        self.url = f"https://127.0.0.1:{port}"
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reposeal.cli",
                    "source",
                    "serve",
                    "--dir",
                    str(self.tmp / "source"),
                    "--repos",
                    str(self.git.parent),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--server-cert",
                    str(server.cert),
                    "--server-key",
                    str(server.key),
                    "--client-ca",
                    str(self.certs["ca"].cert),
                    "--policy",
                    str(self.tmp / "policy.json"),
                    "--repo-url",
                    self.repo_url,
                    *self.tls("source"),
                    "--poll",
                    "0.3",
                    *self.source_extra,
                ],
                stdout=self.source_log,
                stderr=self.source_log,
            )
        )
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)

    def client(self, name: str) -> SourceClient:
        c = self.certs[name]
        return SourceClient(self.url, client_context(c, self.certs["ca"].cert), timeout=30)

    def proposal(self, commit: str) -> dict:
        for _ in range(100):
            found = [p for p in self.client("maint0").proposals() if p["commit"] == commit]
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no proposal for {commit}")

    def approve(
        self, who: int, commit: str, key: Path | None = None, pkgbase: str = "hello"
    ) -> subprocess.CompletedProcess[str]:
        signer = key or self.world.maintainers[who].signer.path
        return cli(
            "approve", pkgbase, commit, "--source", self.url, *self.tls(f"maint{who}"),
            "--signer", f"soft:{signer}", "--yes", "--json",
        )  # fmt: skip

    def build(self, who: int, command: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--build-command", command] if command else []
        return cli(
            "builder", "run", "--once", "--source", self.url, "--repo-url", self.repo_url,
            *self.tls(f"builder{who}"), "--signer", f"soft:{self.world.builders[who].signer.path}",
            "--workdir", str(self.workdir), *extra,
        )  # fmt: skip

    def close(self) -> None:
        for p in reversed(self.procs):  # clients (builders) before the servers they poll
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.source_log.close()

    def said(self) -> str:
        """What the source machine logged (and any traceback its web server printed)."""
        return (self.tmp / "source.log").read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def running_pipeline(
    tmp_path: Path,
    world: World,  # noqa: F811
    policy_doc: bytes | None = None,
    extra: dict[str, list[str]] | None = None,
) -> Iterator[Pipeline]:
    """Repo machine (with a mirror), enclave and source machine, running; builders are
    run by the test (`builder run --once`). ``extra``: more options for "repo", "enclave"
    and "source"."""
    more = extra or {}
    service = start_service(
        tmp_path,
        world,
        "--mirror",
        str(tmp_path / "mirror"),
        *more.get("repo", []),
        policy_doc=policy_doc,
    )
    url, certs = next(service)
    p = Pipeline(tmp_path, world, url, certs)
    home = init_enclave(tmp_path, world)
    run = [*enclave_run((url, certs), home), "--wait", "5", *more.get("enclave", [])]
    p.procs.append(
        subprocess.Popen(
            [sys.executable, "-m", "reposeal.cli", *run],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    p.source_extra = more.get("source", [])
    p.start_source()
    try:
        yield p
    finally:
        p.close()
        service.close()


@pytest.fixture
def pipeline(tmp_path: Path, world: World) -> Iterator[Pipeline]:  # noqa: F811
    with running_pipeline(tmp_path, world) as p:
        yield p


def wait_published(
    p: Pipeline, version: str, pkgbase: str = "hello", commit: str | None = None
) -> None:
    """Until a cycle that took ``pkgbase`` (at ``commit``, when given) is done."""
    db = p.tmp / "mirror" / "core" / "os" / "x86_64" / "core.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = as_role((p.repo_url, p.certs), "repo").status()
        done = [c for c in status["cycles"] if c["step"] == "done"]
        if db.exists() and any(s[0] == pkgbase and commit in (None, s[1])
                               for c in done for s in c["sources"]):  # fmt: skip
            return
        time.sleep(0.2)
    raise AssertionError(f"{pkgbase} {version} was not published: {status}")


def test_an_approved_change_is_built_twice_signed_and_installed(
    pipeline: Pipeline,
    world: World,  # noqa: F811
) -> None:
    p = pipeline
    first = commit_pkgbuild(p.git, "hello-1.0", 1_700_000_000)
    proposal = p.proposal(first)
    assert proposal["author"] is None, "the author is not a maintainer"

    one = p.approve(0, first)
    assert one.returncode == 0, one.stderr
    assert "+pkgver=1.0" in one.stderr, "the maintainer saw the change before signing"
    answer = json.loads(one.stdout)
    assert answer["job"] is None and "1 more maintainer approvals" in answer["missing"][0]
    assert p.proposal(first)["jobs"] == []
    nothing = p.build(0)
    assert nothing.returncode == 0 and "built 0 job" in nothing.stdout, "one approval: no build"

    outsider = p.approve(1, first, key=world.outsider.signer.path)  # type: ignore[union-attr]
    assert outsider.returncode != 0
    assert (
        "no signature on this approval is by a maintainer key" in outsider.stderr + outsider.stdout
    )

    with pytest.raises(SourceError, match="403"):  # a builder cannot approve
        p.client("builder0").approve(b"{}", b"")
    with pytest.raises(SourceError, match="403"):  # a maintainer cannot build
        p.client("maint0").take_build(0)
    for who in ("maint0", "builder0"):  # nor reach the enclave's queue on the repo machine
        bridge = BridgeClient(p.repo_url, client_context(p.certs[who], p.certs["ca"].cert))
        with pytest.raises(BridgeError, match="403"):
            bridge.next_job(0)

    two = p.approve(1, first)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["job"] == f"hello-{first[:12]}-core"
    for who in (0, 1):
        out = p.build(who)
        assert out.returncode == 0 and "built 1 job" in out.stdout, out.stderr
    wait_published(p, "1.0")
    (job,) = p.proposal(first)["jobs"]
    assert job["built_by"] == ["builder0", "builder1"] and job["differences"] == []

    scratch = pacman_trusting_the_enclave(p.tmp, world, p.tmp / "mirror" / "core" / "os" / "x86_64")
    tools.run_text(scratch.command("-Sy"))
    tools.run_text(scratch.command("-S", "--noconfirm", "hello"))
    assert "hello 1.0-1" in tools.run_text(scratch.command("-Q", "hello")).stdout

    # a builder that injects a different file is outvoted, reported, and nothing is published
    second = commit_pkgbuild(p.git, "hello-1.1", 1_700_000_100)
    fresh = p.proposal(second)  # approvals bind a commit: a new one starts from nothing
    assert fresh["approvals"]["core"]["signers"] == [] and fresh["jobs"] == []
    for who in (0, 1):
        assert p.approve(who, second).returncode == 0
    assert p.build(0).returncode == 0
    rogue = "sh -c 'echo evil > /dev/null; sed -i \"s/hello 1.1/evil/\" PKGBUILD; " \
            "makepkg --nodeps --force --noconfirm'"  # fmt: skip
    out = p.build(1, rogue)
    assert out.returncode == 0, out.stderr
    said = out.stdout + out.stderr  # (its log lines are on stdout)
    assert "DISAGREEMENT" in said and "usr/share/hello/message" in said, said
    (job,) = p.proposal(second)["jobs"]
    assert any(
        "content differs in" in d and "usr/share/hello/message" in d for d in job["differences"]
    )
    listed = cli("proposals", "--source", p.url, *p.tls("maint0"))
    assert "DISAGREEMENT" in listed.stdout, listed.stdout
    time.sleep(1.5)  # give the repo machine's cycle its chance to (wrongly) publish
    status = as_role((p.repo_url, p.certs), "repo").status()
    waiting = [w for w in status["waiting"] if w["pkgbase"] == "hello"]
    assert waiting and any("builders attest" in m for w in waiting for m in w["missing"]), status
    tools.run_text(scratch.command("-Sy"))
    assert "hello 1.0-1" in tools.run_text(scratch.command("-Sl", "core")).stdout
    tools.gpg_kill(scratch.gpgdir)


def test_a_withdrawn_commit_goes_to_no_builder_and_the_repo_machine_learns_of_it(
    pipeline: Pipeline,
    world: World,  # noqa: F811
) -> None:
    """Issue 16: a maintainer's withdrawal reaches the source machine too: the approved
    commit's build job is handed to no builder, the proposal says who withdrew it, and the
    repo machine is told (and drops it)."""
    p = pipeline
    commit = commit_pkgbuild(p.git, "hello-1.0", 1_700_000_000)
    p.proposal(commit)
    for who in (0, 1):
        assert p.approve(who, commit).returncode == 0
    maint0 = world.maintainers[0].signer.path
    withdraw = ["withdraw", "hello", commit, "--source", p.url, "--repo", "core", "--json"]

    outsider = cli(*withdraw, *p.tls("maint1"), "--signer", f"soft:{world.outsider.signer.path}")  # type: ignore[union-attr]
    assert outsider.returncode != 0 and "maintainer key" in outsider.stdout, outsider.stdout
    with pytest.raises(SourceError, match="403"):  # a builder cannot withdraw
        p.client("builder0").withdraw(b"{}", b"")

    done = cli(*withdraw, *p.tls("maint0"), "--signer", f"soft:{maint0}")
    assert done.returncode == 0, done.stdout + done.stderr + p.said()
    assert json.loads(done.stdout)["jobs"] == [f"hello-{commit[:12]}-core"]
    nothing = p.build(0)
    assert nothing.returncode == 0 and "built 0 job" in nothing.stdout, nothing.stderr
    assert p.proposal(commit)["withdrawn"] == {"core": [world.maintainers[0].fpr]}
    listed = cli("proposals", "--source", p.url, *p.tls("maint0"))
    assert "WITHDRAWN" in listed.stdout, listed.stdout

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the source machine forwards it to the repo machine
        status = as_role((p.repo_url, p.certs), "repo").status()
        missing = [m for w in status["waiting"] if w["pkgbase"] == "hello" for m in w["missing"]]
        if any("withdrawn by" in m for m in missing):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the repo machine never heard of the withdrawal: {status}")
