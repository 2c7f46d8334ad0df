"""The demo's second half: the three machines of the design as processes on 127.0.0.1.

A source machine watching a real git repository, two builders building in bubblewrap, the
repo machine (`repo serve --mirror`) and the enclave (`enclave run`, dialling out to it).
Maintainers approve a PKGBUILD change, the builders build it reproducibly, the enclave signs
what the evidence allows, and the real pacman installs it. Then a rogue insider tries: an
unapproved package, a downgrade, a replayed old database, a tampered log; each is refused,
and the demo shows the refusal. It ends with `enclave audit` passing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from reposeal.client.scratch import ScratchPacman

Run = Callable[..., subprocess.CompletedProcess[str]]
REPOSEAL = [sys.executable, "-m", "reposeal.cli"]
VALIDITY = 45  # seconds a database signature holds in the demo (7 days in production)

PKGBUILD = """\
    pkgname=greeter
    pkgver={version}
    pkgrel=1
    pkgdesc="Greets you from a repository only a quorum can change"
    arch=(any)
    license=(MIT)
    package() {{
      install -Dm644 /dev/stdin "$pkgdir/usr/share/greeter/greeting" <<< "{text}"
    }}
    """


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"demo failed: nothing listens on port {port}")


class Demo:
    def __init__(self, out: Path, run: Run, step: Callable[[str], None]) -> None:
        self.out, self.run, self.step = out, run, step
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gpg_homes: list[Path] = []
        self.refusals: list[str] = []
        (out / "logs").mkdir(parents=True)

    def poll(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command run again and again while waiting: not shown."""
        return subprocess.run([*REPOSEAL, *args], capture_output=True, text=True, check=False)

    def cli(
        self, *args: str, check: bool = True, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.run([*REPOSEAL, *args], check=check, quiet=quiet)

    def background(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.out / "logs" / f"{name}.log", "wb")  # noqa: SIM115  (the process keeps it)
        proc = subprocess.Popen([*REPOSEAL, *args], stdout=log, stderr=log)
        self.procs.append(proc)
        print(f"started {name} (log: logs/{name}.log)")
        return proc

    def refused(self, what: str, proc: subprocess.CompletedProcess[str], expect: str) -> None:
        text = proc.stdout + proc.stderr
        if proc.returncode == 0 or expect not in text:
            sys.exit(
                f"demo failed: {what} was not refused as expected ({proc.returncode}):\n{text}"
            )
        self.refusals.append(what)
        print(f"\033[1;32mREFUSED as it must be:\033[0m {what}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for home in self.gpg_homes:
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True
            )

    # -- setup -----------------------------------------------------------------------------

    def keys_and_policy(self) -> None:
        self.step(
            "6. Keys for each role; a policy the admins sign: 2 approvals, 2 builds, and 2 of "
            "3 witnesses cosigning the log"
        )
        keys = self.out / "keys"
        keys.mkdir()
        self.keys = keys
        self.witnesses: list[tuple[str, Path, int]] = []  # (name, key file, port)
        witness_args: list[str] = []
        for i in range(3):
            key = keys / f"witness{i}.key"
            vkey = self.cli(
                "witness", "keygen", "--name", f"w{i}.demo.example.org", "-o", str(key),
                quiet=True,
            ).stdout.strip()  # fmt: skip
            port = free_port()
            self.witnesses.append((f"w{i}", key, port))
            witness_args += ["--witness", f"w{i},{vkey},http://127.0.0.1:{port}"]
        for role in ("admin", "maintainer", "builder"):
            specs = []
            for i in range(3 if role != "builder" else 2):
                spec = f"soft:{keys / f'{role}{i}.key'}"
                uid = f"{role}{i} <{role}{i}@example.org>"
                self.cli("key", "generate", "--signer", spec, "--uid", uid, quiet=True)
                specs.append(spec)
            ring = "".join(
                self.cli("key", "export", "--signer", s, quiet=True).stdout for s in specs
            )
            (keys / f"{role}s.asc").write_text(ring)
        self.policy = self.out / "policy.json"
        self.cli(
            "policy",
            "init",
            "-o",
            str(self.policy),
            "--admins",
            str(keys / "admins.asc"),
            "--maintainers",
            str(keys / "maintainers.asc"),
            "--builders",
            str(keys / "builders.asc"),
            "--admin-threshold",
            "2",
            "--approvals",
            "2",
            "--builds",
            "2",
            "--repo",
            "core:x86_64",
            "--db-validity",
            f"{VALIDITY}s",
            *witness_args,
            "--witness-quorum",
            "2",
        )
        for i in range(2):
            self.cli(
                "policy", "sign", "--signer", f"soft:{keys / f'admin{i}.key'}", str(self.policy)
            )
        self.cli("policy", "verify", str(self.policy))
        self.witness_policy = self.out / "witnesses.policy"
        self.witness_policy.write_text(self.cli("policy", "witnesses", str(self.policy)).stdout)
        print("witnesses.policy (C2SP tlog-policy) is what clients get with the keyring")

    def machines(self) -> None:
        self.step("7. The enclave's key and log; certificates; the machines start on 127.0.0.1")
        self.enclave_key = f"soft:{self.keys / 'enclave.key'}"
        self.fpr = self.cli(
            "key",
            "generate",
            "--signer",
            self.enclave_key,
            "--uid",
            "demo repository <repo@example.org>",
            quiet=True,
        ).stdout.strip()
        self.trusted = self.out / "trusted.asc"
        self.trusted.write_text(
            self.cli("key", "export", "--signer", self.enclave_key, quiet=True).stdout
        )
        self.home = self.out / "enclave"
        self.cli(
            "enclave",
            "init",
            "--home",
            str(self.home),
            "--signer",
            self.enclave_key,
            "--policy",
            str(self.policy),
            "--origin",
            "demo.example.org/log",
        )
        from reposeal.enclave.home import EnclaveHome

        log_key = EnclaveHome(self.home).note_signer().verifier.encode()
        self.witness_procs = []
        for name, key, port in self.witnesses:
            self.witness_procs.append(
                self.background(
                    f"witness-{name}",
                    "witness",
                    "serve",
                    "--db",
                    str(self.out / "witnesses" / f"{name}.sqlite"),
                    "--key",
                    str(key),
                    "--log",
                    f"demo.example.org/log={log_key}",
                    "--listen",
                    f"127.0.0.1:{port}",
                )
            )
            wait_port(port)
        pki = self.out / "pki"
        self.pki = pki
        self.cli(
            "bridge", "pki", str(pki), "--also", "builder0:builder", "--also", "builder1:builder"
        )
        ca = str(pki / "ca.pem")
        self.mirror = self.out / "mirror"
        repo_port, source_port = free_port(), free_port()
        self.repo_url = f"https://127.0.0.1:{repo_port}"
        self.source_url = f"https://127.0.0.1:{source_port}"
        self.background(
            "repo-machine",
            "repo",
            "serve",
            "--dir",
            str(self.out / "repo-machine"),
            "--listen",
            f"127.0.0.1:{repo_port}",
            "--cert",
            str(pki / "bridge.pem"),
            "--key",
            str(pki / "bridge.key"),
            "--client-ca",
            ca,
            "--policy",
            str(self.policy),
            "--mirror",
            str(self.mirror),
            "--refresh-before",
            f"{VALIDITY - 15}s",
            "--rewitness",
            "10s",
        )
        wait_port(repo_port)
        self.background(
            "enclave",
            "enclave",
            "run",
            "--home",
            str(self.home),
            "--bridge",
            self.repo_url,
            "--cert",
            str(pki / "enclave.pem"),
            "--key",
            str(pki / "enclave.key"),
            "--ca",
            ca,
            "--wait",
            "5",
        )
        self.git = self.out / "pkgbuilds" / "greeter"
        self.git.mkdir(parents=True)
        self.git_cmd("init", "-q", "-b", "main")
        self.commit("1.0", "hello from a quorum")
        self.background(
            "source-machine",
            "source",
            "serve",
            "--dir",
            str(self.out / "source-machine"),
            "--repos",
            str(self.git.parent),
            "--listen",
            f"127.0.0.1:{source_port}",
            "--server-cert",
            str(pki / "source-server.pem"),
            "--server-key",
            str(pki / "source-server.key"),
            "--client-ca",
            ca,
            "--policy",
            str(self.policy),
            "--repo-url",
            self.repo_url,
            "--cert",
            str(pki / "source.pem"),
            "--key",
            str(pki / "source.key"),
            "--ca",
            ca,
            "--poll",
            "0.5",
        )
        wait_port(source_port)
        self.workdir = Path(tempfile.mkdtemp(prefix="reposeal-demo-builds-"))
        for i in range(2):
            self.background(
                f"builder{i}",
                "builder",
                "run",
                "--source",
                self.source_url,
                "--repo-url",
                self.repo_url,
                *self.tls(f"builder{i}"),
                "--signer",
                f"soft:{self.keys / f'builder{i}.key'}",
                "--workdir",
                str(self.workdir),
                "--wait",
                "20",
            )

    def tls(self, name: str) -> list[str]:
        pki = self.pki
        return [
            "--cert",
            str(pki / f"{name}.pem"),
            "--key",
            str(pki / f"{name}.key"),
            "--ca",
            str(pki / "ca.pem"),
        ]

    def git_cmd(self, *args: str) -> str:
        who = ["-c", "user.name=A Contributor", "-c", "user.email=contributor@example.org"]
        proc = subprocess.run(
            ["git", "-C", str(self.git), *who, *args], capture_output=True, text=True, check=True
        )
        return proc.stdout.strip()

    def commit(self, version: str, text: str) -> str:
        (self.git / "PKGBUILD").write_text(
            textwrap.dedent(PKGBUILD.format(version=version, text=text))
        )
        self.git_cmd("add", "PKGBUILD")
        self.git_cmd("commit", "-q", "-m", f"greeter {version}")
        return self.git_cmd("rev-parse", "HEAD")

    # -- the honest path -------------------------------------------------------------------

    def approve(self, who: int, commit: str) -> dict[str, object]:
        proc = self.cli(
            "approve",
            "greeter",
            commit,
            "--source",
            self.source_url,
            *self.tls("maintainer"),
            "--signer",
            f"soft:{self.keys / f'maintainer{who}.key'}",
            "--yes",
            "--json",
        )
        return dict(json.loads(proc.stdout))

    def wait_proposal(self, commit: str) -> None:
        for _ in range(100):
            proc = self.poll(
                "proposals", "--source", self.source_url, *self.tls("maintainer"), "--json"
            )
            if any(p["commit"] == commit for p in json.loads(proc.stdout)):
                return
            time.sleep(0.2)
        sys.exit("demo failed: the source machine never proposed the commit")

    def wait_published(self, version: str) -> None:
        db = self.mirror / "core" / "os" / "x86_64" / "core.db"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90:
            if db.exists():
                proc = subprocess.run(["bsdtar", "-tf", str(db)], capture_output=True, text=True)
                if f"greeter-{version}-1/" in proc.stdout and self.cycles_done():
                    took = time.monotonic() - t0
                    print(f"greeter {version} is on the mirror, signed, after {took:.1f} s")
                    return
            time.sleep(0.2)
        sys.exit(f"demo failed: greeter {version} was not published; see demo-out/logs/")

    def cycles_done(self) -> bool:
        """The repo machine has finished its cycles (the log is on the mirror too)."""
        proc = self.poll("repo", "status", "--bridge", self.repo_url, *self.tls("repo"), "--json")
        if proc.returncode != 0:
            return False
        cycles = json.loads(proc.stdout).get("cycles", [])
        return all(c["step"] in ("done", "failed") for c in cycles)

    def release(self, version: str, text: str, first: bool = False) -> str:
        commit = self.commit(version, text) if not first else self.git_cmd("rev-parse", "HEAD")
        self.wait_proposal(commit)
        answer = self.approve(0, commit)
        print(f"maintainer0 approved; the source machine says: waiting for {answer['missing']}")
        if first:
            time.sleep(1)
            self.cli("proposals", "--source", self.source_url, *self.tls("maintainer"))
            print("one approval: no build job, nothing built")
        answer = self.approve(1, commit)
        print(f"maintainer1 approved; build job {answer['job']}; the builders take it ...")
        self.wait_published(version)
        return commit

    def honest(self) -> ScratchPacman:
        self.step(
            "8. A maintainer's change: approved twice, built twice in bubblewrap, signed, published"
        )
        self.release("1.0", "hello from a quorum", first=True)
        self.cli("proposals", "--source", self.source_url, *self.tls("maintainer"))
        self.db1 = (self.pool / "core.db").read_bytes(), (self.pool / "core.db.sig").read_bytes()
        self.db1_signed = time.time()
        self.step(
            "9. pacman (scratch root, trusts only the enclave's key) installs it; verify passes"
        )
        scratch = ScratchPacman(self.out / "pacman-pipeline", {"core": self.pool})
        scratch.base.mkdir()
        self.gpg_homes.append(scratch.gpgdir)
        scratch.trust(self.trusted, self.fpr)
        scratch.write_conf("Required DatabaseRequired")
        self.run(scratch.command("-Sy"))
        self.run(scratch.command("-S", "greeter"))
        greeting = scratch.root / "usr/share/greeter/greeting"
        print(f"{greeting.relative_to(self.out)}: {greeting.read_text().strip()}")
        self.verify(f"file://{self.pool}")
        self.step("10. The next change, 1.1, goes the same way, with one witness stopped")
        self.witness_procs[0].terminate()
        self.witness_procs[0].wait(10)
        print("witness w0 stopped: w1 and w2 are the quorum")
        self.release("1.1", "hello again, still from a quorum")
        self.verify(f"file://{self.pool}")
        cosigned = (self.mirror / "log" / "checkpoint").read_text().count("\u2014 w")
        print(f"the published checkpoint carries {cosigned} witness cosignatures")
        return scratch

    @property
    def pool(self) -> Path:
        return self.mirror / "core" / "os" / "x86_64"

    def verify(self, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "verify",
            "--repo-url",
            url,
            "--name",
            "core",
            "--keyring",
            str(self.trusted),
            "--state-dir",
            str(self.out / "client-state"),
            "--witnesses",
            str(self.witness_policy),
            check=check,
        )

    # -- the rogue insider -----------------------------------------------------------------

    def rogue(self, scratch: ScratchPacman) -> None:
        self.step(
            "11. A rogue insider with the repo machine's certificate asks the enclave directly"
        )
        parent = hashlib.sha256((self.pool / "core.db").read_bytes()).hexdigest()
        as_repo = ["--bridge", self.repo_url, *self.tls("repo")]
        from reposeal.alpm.synthetic import write_package

        work = self.out / "insider"
        work.mkdir()
        sneaky = write_package(work, "greeter", "1.2-1", pkgbuild_sha256="0" * 64)
        self.cli(
            "bridge", "submit", *as_repo, "--job-id", "insider-unapproved", "--repo", "core",
            "--arch", "x86_64", "--add", str(sneaky), "--parent", parent,
        )  # fmt: skip
        self.await_refusal(
            "an unapproved package (greeter 1.2, no approvals, no builds)",
            "insider-unapproved",
            "quorum",
        )
        old = sorted(self.mirror.glob("archive/packages/g/greeter/greeter-1.0-1-*.pkg.tar.zst"))[0]
        self.cli(
            "bridge", "submit", *as_repo, "--job-id", "insider-downgrade", "--repo", "core",
            "--arch", "x86_64", "--add", str(old), "--parent", parent,
        )  # fmt: skip
        self.await_refusal(
            "a downgrade (greeter 1.1 -> 1.0, the old file and all)",
            "insider-downgrade",
            "older than",
        )
        self.cli(
            "bridge", "submit", *as_repo, "--job-id", "insider-replay", "--repo", "core",
            "--arch", "x86_64", "--add", str(old), "--parent", "none",
        )  # fmt: skip
        self.await_refusal(
            "a transition from the empty repository again (to bring back the 1.0 database)",
            "insider-replay",
            "stale or forked",
        )
        self.insider_database(parent)

        self.step("12. A mirror replays the old 1.0 database (validly signed) to users")
        stale = self.out / "stale-mirror"
        stale_pool = stale / "core" / "os" / "x86_64"
        stale_pool.mkdir(parents=True)
        (stale_pool / "core.db").write_bytes(self.db1[0])
        (stale_pool / "core.db.sig").write_bytes(self.db1[1])
        for f in self.mirror.glob("archive/packages/g/greeter/*"):
            shutil.copy2(f, stale_pool / f.name)
        shutil.copytree(self.mirror / "log", stale / "log")
        self.refused(
            "reposeal verify of the replayed database",
            self.verify(f"file://{stale_pool}", check=False),
            "not the latest",
        )
        wrapper = self.cli(
            "pacman",
            "--keyring",
            str(self.trusted),
            "--state-dir",
            str(self.out / "client-state"),
            "--config",
            str(self.stale_pacman(stale_pool).conf),
            "-Sy",
            "--noconfirm",
            "greeter",
            check=False,
        )
        self.refused(
            "`reposeal pacman -Sy greeter` from the replaying mirror (nothing installed)",
            wrapper,
            "not the latest",
        )

        self.step("13. Someone edits the published log (an entry rewritten)")
        tampered = self.out / "tampered-mirror"
        shutil.copytree(self.mirror, tampered, symlinks=True)
        tile = sorted((tampered / "log" / "tile" / "entries").rglob("*"))[-1]
        data = bytearray(tile.read_bytes())
        at = data.find(b'"repo":"core"')
        data[at + 8 : at + 12] = b"evil"
        tile.write_bytes(bytes(data))
        self.refused(
            "reposeal verify against the edited log",
            self.verify(f"file://{tampered / 'core/os/x86_64'}", check=False),
            "do not make the checkpoint's tree",
        )
        copy = self.out / "enclave-copy"
        shutil.copytree(self.home, copy)
        import sqlite3

        with sqlite3.connect(copy / "log.sqlite") as c:
            (last,) = c.execute(
                "SELECT MAX(idx) FROM entry WHERE CAST(data AS TEXT) LIKE '%x86_64%'"
            ).fetchone()
            c.execute(
                "UPDATE entry SET data = CAST(REPLACE(CAST(data AS TEXT), 'x86_64', 'x86_65') "
                "AS BLOB) WHERE idx = ?",
                (last,),
            )
        self.refused(
            "enclave audit of a copy of the enclave's log with an entry rewritten",
            self.cli("enclave", "audit", str(copy), check=False),
            "",
        )

        self.stolen_keys()

        self.step(
            f"15. Once its signature expires ({VALIDITY} s after signing), pacman itself "
            "refuses the replayed database"
        )
        newer = time.monotonic() + VALIDITY  # the mirror's signature is one made after db1's
        while (self.pool / "core.db.sig").stat().st_mtime < self.db1_signed + 2:
            if time.monotonic() > newer:
                sys.exit("demo failed: the repo machine did not refresh the signature")
            time.sleep(0.5)
        skew = max(0, round(self.db1_signed + VALIDITY + 2 - time.time()))
        later = ["faketime", "-f", f"+{skew}s"]  # nobody waits: pacman's clock moves on
        print(f"pacman runs {skew} s in the future (faketime), past the old signature's expiry")
        stale_scratch = self.stale_pacman(stale_pool)
        proc = self.run([*later, *stale_scratch.command("-Syy")], check=False)
        self.refused("pacman -Sy of the replayed database, its signature expired", proc, "expired")
        self.run([*later, *scratch.command("-Syy")])
        print("at the same moment the real mirror still syncs: the repo machine refreshes its")
        print("database signature before it expires (a complaint above, if any, is pacman about")
        print("its own cached copy from step 9)")
        self.verify(f"file://{self.pool}")

    def stolen_keys(self) -> None:
        self.step(
            "14. With the log's own keys stolen, a mirror serves a fork of the log in which the "
            "old 1.0 database is the latest (a split view, shown to some users only)"
        )
        import io

        from reposeal.enclave.home import EnclaveHome
        from reposeal.openpgp.spec import signer_from_spec
        from reposeal.repo.witnessing import post_http, request_body
        from reposeal.translog.checkpoint import Checkpoint
        from reposeal.translog.store import TransparencyLog
        from reposeal.translog.tiles import export

        forked = self.out / "forked-mirror"
        pool = forked / "core" / "os" / "x86_64"
        pool.mkdir(parents=True)
        (pool / "core.db").write_bytes(self.db1[0])
        (pool / "core.db.sig").write_bytes(self.db1[1])
        old = hashlib.sha256(self.db1[0]).hexdigest()
        with TransparencyLog(self.home / "log.sqlite") as real:
            entries = real.entries(0, real.size)
        at = next(i for i, e in enumerate(entries) if json.loads(e).get("db_sha256") == old)
        entries = [*entries[: at + 1], b'{"type":"note","text":"the fork"}']
        with TransparencyLog(self.out / "forked-log.sqlite") as log:
            log.append(entries)
            note = (
                EnclaveHome(self.home)
                .note_signer()
                .sign(Checkpoint("demo.example.org/log", log.size, log.root()).text())
            )
            signature = signer_from_spec(self.enclave_key, None).sign_detached(
                io.BytesIO(note.encode())
            )
            export(log, forked / "log", note.encode(), log.size, signature)
            for name, _, port in self.witnesses[1:]:  # w0 is stopped
                status, held = post_http(
                    f"http://127.0.0.1:{port}", request_body(0, [], note.encode())
                )
                size = int(held.decode()) if status == 409 else 0
                proof = log.consistency_proof(size, log.size) if 0 < size <= log.size else []
                again, why = post_http(
                    f"http://127.0.0.1:{port}", request_body(size, proof, note.encode())
                )
                if again == 200:
                    sys.exit(f"demo failed: witness {name} cosigned the fork")
                self.refusals.append(f"witness {name} cosigning the forked checkpoint")
                print(
                    f"\033[1;32mREFUSED by witness {name}:\033[0m it holds {size} entries of "
                    f"the real log; HTTP {again}: {why.decode().strip()[:100]}"
                )
        self.refused(
            "reposeal verify of the forked log (a first-time client, no state)",
            self.cli(
                "verify",
                "--repo-url",
                f"file://{pool}",
                "--name",
                "core",
                "--keyring",
                str(self.trusted),
                "--state-dir",
                str(self.out / "fresh-client"),
                "--witnesses",
                str(self.witness_policy),
                check=False,
            ),
            "lacks the witnesses' quorum",
        )

    def insider_database(self, parent: str) -> None:
        """The insider writes a database of their own: an entry that claims to replace
        openssh, and a member that reads as a package. There is no way to hand it over."""
        import gzip
        import io
        import tarfile

        from reposeal.cli.bridge import ClientTls
        from reposeal.errors import ReposealError
        from reposeal.protocol.bridge_client import BridgeClient

        lying = b"%FILENAME%\ngreeter-9-1-any.pkg.tar.zst\n\n%NAME%\ngreeter\n\n" + (
            b"%VERSION%\n9-1\n\n%REPLACES%\nopenssh\n\n"
        )
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, data in (("greeter-9-1/desc", lying), (".PKGINFO", b"pkgname = x\n")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        forged = self.out / "insider" / "core.db.tar.gz"
        forged.write_bytes(gzip.compress(raw.getvalue()))
        tls = ClientTls(*map(Path, self.tls("repo")[1::2]))
        client = tls.connect(BridgeClient, self.repo_url)
        digest = client.put_blob(forged)
        for what, job in (
            (
                "a database of the insider's own (an entry replacing openssh, a .PKGINFO member)",
                {
                    "id": "insider-db",
                    "kind": "db",
                    "repo": "core",
                    "arch": "x86_64",
                    "files": {"db": digest},
                    "parent": parent,
                },
            ),
            (
                "the same database slipped in as a transition's file",
                {
                    "id": "insider-db2",
                    "kind": "transition",
                    "repo": "core",
                    "arch": "x86_64",
                    "files": {"db": digest},
                    "add": [],
                    "parent": parent,
                },
            ),
        ):
            try:
                client.submit(job)
            except ReposealError as exc:
                self.refusals.append(what)
                print(f"\033[1;32mREFUSED by the bridge:\033[0m {what}")
                print(f"    - {str(exc)[:200]}")
                continue
            sys.exit(f"demo failed: the bridge took {what}")
        print("(the enclave writes every database it signs; it has no way to take one)")

    def stale_pacman(self, pool: Path) -> ScratchPacman:
        scratch = ScratchPacman(self.out / "pacman-stale", {"core": pool})
        if not scratch.base.exists():
            scratch.base.mkdir()
            self.gpg_homes.append(scratch.gpgdir)
            scratch.trust(self.trusted, self.fpr)
            scratch.write_conf("Required DatabaseRequired")
        return scratch

    def await_refusal(self, what: str, job: str, expect: str) -> None:
        as_repo = ["--bridge", self.repo_url, *self.tls("repo")]
        for _ in range(150):
            proc = self.poll("bridge", "result", *as_repo, "--job-id", job)
            if proc.returncode in (0, 3) and '"result"' in proc.stdout:
                result = json.loads(proc.stdout)["result"]
                reasons = result.get("reasons", [])
                if result.get("decision") == "accept" or not any(expect in r for r in reasons):
                    sys.exit(f"demo failed: the enclave did not refuse {what}: {result}")
                self.refusals.append(what)
                print(f"\033[1;32mREFUSED by the enclave:\033[0m {what}")
                for r in reasons[:3]:
                    print(f"    - {r}")
                return
            time.sleep(0.2)
        sys.exit(f"demo failed: no answer to {job}")

    def audit(self) -> None:
        self.step("16. Anyone can replay the log and re-check every decision")
        self.cli("enclave", "audit", str(self.home))
        print(f"refused, each as it must be: {len(self.refusals)}")
        for r in self.refusals:
            print(f"  - {r}")


def full_pipeline(out: Path, run: Run, step: Callable[[str], None]) -> None:
    demo = Demo(out, run, step)
    try:
        demo.keys_and_policy()
        demo.machines()
        scratch = demo.honest()
        demo.rogue(scratch)
        demo.audit()
    finally:
        demo.stop()
        if hasattr(demo, "workdir"):
            shutil.rmtree(demo.workdir, ignore_errors=True)
