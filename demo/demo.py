#!/usr/bin/env python3
"""`make demo`: the whole pipeline that exists so far, on this machine, with real tools.

1. a repository key is generated (gpg);
2. two packages are built from PKGBUILDs by the real makepkg (unprivileged, reproducible);
3. `reposeal db add --sign` creates the signed sync and files databases;
4. a downgrade is refused and the database stays byte-for-byte the same;
5. the real pacman, in a scratch root that trusts only the repository key, syncs the
   database and installs a package (its dependency comes along).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from reposeal.alpm.synthetic import write_package
from reposeal.builder.makepkg import build
from reposeal.client.scratch import ScratchPacman
from reposeal.openpgp.gpg import generate_key

OUT = Path(__file__).resolve().parent.parent / "demo-out"
REPOSEAL = [sys.executable, "-m", "reposeal.cli"]

PKGBUILDS = {
    "hello": """\
        pkgname=hello-reposeal
        pkgver=1.0
        pkgrel=1
        pkgdesc="Says hello from a reposeal-signed repository"
        arch=(any)
        license=(MIT)
        package() {
          install -Dm644 /dev/stdin \
            "$pkgdir/usr/share/hello-reposeal/greeting" <<< "hello, signed world"
        }
        """,
    "world": """\
        pkgname=world-reposeal
        pkgver=2.0
        pkgrel=1
        pkgdesc="Depends on hello-reposeal"
        arch=(any)
        license=(MIT)
        depends=(hello-reposeal)
        package() {
          install -Dm644 /dev/stdin "$pkgdir/usr/share/world-reposeal/README" <<< "the world"
        }
        """,
}


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(
    cmd: list[str], check: bool = True, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    shown = [Path(c).name if c == sys.executable else c for c in cmd]
    print("$ " + shlex.join(shown).replace(str(OUT) + "/", ""), flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=True, check=False)
    if not quiet:
        sys.stdout.write(proc.stdout)
        sys.stdout.write(proc.stderr)
    if check and proc.returncode != 0:
        if quiet:
            sys.stdout.write(proc.stdout + proc.stderr)
        sys.exit(f"demo failed: {shlex.join(cmd)} exited {proc.returncode}")
    return proc


enclave_homes: list[Path] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enclave_pipeline(packages: list[Path], packager: tuple[Path, str]) -> ScratchPacman:
    """Steps 6-10: policy, evidence, the enclave behind the bridge, pacman."""
    keys = OUT / "keys"
    keys.mkdir()
    step("6. Keys for each role, and a policy the admins sign (2 of 3 of each role needed)")
    rings: dict[str, list[str]] = {}
    for role in ("admin", "maintainer", "builder"):
        rings[role] = []
        for i in range(3):
            spec = f"soft:{keys / f'{role}{i}.key'}"
            run(
                [
                    *REPOSEAL,
                    "key",
                    "generate",
                    "--signer",
                    spec,
                    "--uid",
                    f"{role}{i} <{role}{i}@example.org>",
                ],
                quiet=True,
            )
            rings[role].append(spec)
        ring = keys / f"{role}s.asc"
        ring.write_text(
            "".join(
                run([*REPOSEAL, "key", "export", "--signer", s], quiet=True).stdout
                for s in rings[role]
            )
        )
    policy = OUT / "policy.json"
    run(
        [
            *REPOSEAL,
            "policy",
            "init",
            "-o",
            str(policy),
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
        ]
    )
    for spec in rings["admin"][:2]:
        run([*REPOSEAL, "policy", "sign", "--signer", spec, str(policy)])
    run([*REPOSEAL, "policy", "verify", str(policy)])

    step("7. The enclave: its own key, the policy, a transparency log (SQLite) with genesis")
    home = OUT / "enclave"
    enclave_key = f"soft:{keys / 'enclave-repo.key'}"
    fpr = run(
        [
            *REPOSEAL,
            "key",
            "generate",
            "--signer",
            enclave_key,
            "--uid",
            "demo repository (enclave) <repo@example.org>",
        ],
        quiet=True,
    ).stdout.strip()
    run(
        [
            *REPOSEAL,
            "enclave",
            "init",
            "--home",
            str(home),
            "--signer",
            enclave_key,
            "--policy",
            str(policy),
            "--origin",
            "demo.example.org/log",
        ]
    )

    step("8. Evidence: two maintainers approve the sources, two builders attest the files")
    evidence = OUT / "evidence"
    evidence.mkdir()
    src = OUT / "sources"
    src.mkdir()
    for pkg in packages:
        name = pkg.name.split("-reposeal-")[0]
        pkgbuild = src / f"{name}.PKGBUILD"
        pkgbuild.write_text(textwrap.dedent(PKGBUILDS[name]))
        commit = hashlib.sha1(pkgbuild.read_bytes()).hexdigest()  # noqa: S324  (a git id)
        base = f"{name}-reposeal"
        approval, build = evidence / f"{name}-approval.json", evidence / f"{name}-build.json"
        run(
            [
                *REPOSEAL,
                "statement",
                "approve",
                "-o",
                str(approval),
                "--signer",
                rings["maintainer"][0],
                "--repo",
                "core",
                "--pkgbase",
                base,
                "--commit",
                commit,
                "--pkgbuild",
                str(pkgbuild),
            ],
            quiet=True,
        )
        run([*REPOSEAL, "policy", "sign", "--signer", rings["maintainer"][1], str(approval)])
        run(
            [
                *REPOSEAL,
                "statement",
                "build",
                "-o",
                str(build),
                "--signer",
                rings["builder"][0],
                "--package",
                str(pkg),
                "--pkgbase",
                base,
                "--commit",
                commit,
            ],
            quiet=True,
        )
        run([*REPOSEAL, "policy", "sign", "--signer", rings["builder"][1], str(build)])
    run(
        [
            *REPOSEAL,
            "statement",
            "verify",
            "--policy",
            str(policy),
            str(evidence / "world-approval.json"),
        ]
    )

    step(
        "9. The repo machine queues the job on the bridge (mutual TLS, 127.0.0.1); the "
        "enclave dials out, checks it in bubblewrap, signs, logs"
    )
    pki = OUT / "pki"
    run([*REPOSEAL, "bridge", "pki", str(pki)])
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    bridge = subprocess.Popen(
        [
            *REPOSEAL,
            "bridge",
            "serve",
            "--dir",
            str(OUT / "queue"),
            "--listen",
            f"127.0.0.1:{port}",
            "--cert",
            str(pki / "bridge.pem"),
            "--key",
            str(pki / "bridge.key"),
            "--client-ca",
            str(pki / "ca.pem"),
        ]
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        repo = OUT / "enclave-repo"
        repo.mkdir()
        for pkg in packages:
            shutil.copy2(pkg, repo / pkg.name)
            shutil.copy2(pkg.with_name(pkg.name + ".sig"), repo / (pkg.name + ".sig"))
        db = repo / "core.db.tar.gz"
        run([*REPOSEAL, "db", "add", "-q", str(db), *(str(repo / p.name) for p in packages)])
        as_repo = [
            "--bridge",
            url,
            "--cert",
            str(pki / "repo.pem"),
            "--key",
            str(pki / "repo.key"),
            "--ca",
            str(pki / "ca.pem"),
        ]
        run(
            [
                *REPOSEAL,
                "bridge",
                "submit",
                *as_repo,
                "--job-id",
                "no-evidence",
                "--repo",
                "core",
                "--arch",
                "x86_64",
                "--db",
                str(db),
                *(a for p in packages for a in ("--package", str(repo / p.name))),
            ]
        )
        run(
            [
                *REPOSEAL,
                "bridge",
                "submit",
                *as_repo,
                "--job-id",
                "core-1",
                "--repo",
                "core",
                "--arch",
                "x86_64",
                "--db",
                str(db),
                "--evidence",
                str(evidence),
                *(a for p in packages for a in ("--package", str(repo / p.name))),
            ]
        )
        run(
            [
                *REPOSEAL,
                "enclave",
                "run",
                "--once",
                "--wait",
                "2",
                "--home",
                str(home),
                "--bridge",
                url,
                "--cert",
                str(pki / "enclave.pem"),
                "--key",
                str(pki / "enclave.key"),
                "--ca",
                str(pki / "ca.pem"),
            ]
        )
        refused = run(
            [*REPOSEAL, "bridge", "result", *as_repo, "--job-id", "no-evidence"],
            check=False,
            quiet=True,
        )
        print("job without evidence:", json.loads(refused.stdout)["result"]["reasons"][:2])
        run(
            [
                *REPOSEAL,
                "bridge",
                "result",
                *as_repo,
                "--job-id",
                "core-1",
                "-o",
                str(repo / "core.db.sig"),
            ],
            quiet=True,
        )
        print("job core-1 signed; signature written to enclave-repo/core.db.sig")
    finally:
        bridge.terminate()
        bridge.wait(10)
    run([*REPOSEAL, "enclave", "status", "--home", str(home)])
    run([*REPOSEAL, "enclave", "audit", str(home)])

    step("10. pacman, trusting only the enclave's key, installs from the enclave-signed repo")
    public = OUT / "enclave-key.asc"
    public.write_text(run([*REPOSEAL, "key", "export", "--signer", enclave_key], quiet=True).stdout)
    scratch = ScratchPacman(OUT / "pacman-enclave", {"core": repo})
    scratch.base.mkdir()
    enclave_homes.append(scratch.gpgdir)
    scratch.trust(public, fpr)
    scratch.trust(*packager, init=False)  # packages stay signed by their packager
    scratch.write_conf("Required DatabaseRequired")
    run(scratch.command("-Sy"))
    run(scratch.command("-S", "world-reposeal"))
    readme = scratch.root / "usr/share/world-reposeal/README"
    print(f"{readme.relative_to(OUT)}: {readme.read_text().strip()}")
    return scratch


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    gnupg, repo = OUT / "signing-key", OUT / "repo"
    gnupg.mkdir(mode=0o700)
    repo.mkdir()
    scratch = ScratchPacman(OUT / "pacman", {"demo": repo})
    try:
        step("1. Generate the repository signing key")
        fpr = generate_key(gnupg, "reposeal demo <demo@example.org>")
        print(f"fingerprint {fpr}")
        public = OUT / "repo-key.asc"
        public.write_text(
            run(["gpg", "--homedir", str(gnupg), "--armor", "--export", fpr], quiet=True).stdout
        )

        step("2. Build packages with the real makepkg (unprivileged, SOURCE_DATE_EPOCH fixed)")
        packages = []
        with tempfile.TemporaryDirectory(prefix="reposeal-demo-build-") as tmp:
            Path(tmp).chmod(0o755)
            for name, text in PKGBUILDS.items():
                workdir = Path(tmp) / name
                workdir.mkdir()
                workdir.chmod(0o755)
                (workdir / "PKGBUILD").write_text(textwrap.dedent(text))
                for pkg in build(workdir, source_date_epoch=1700000000):
                    dest = repo / pkg.name
                    shutil.copy2(pkg, dest)
                    packages.append(dest)
                    print(f"built {dest.name}")
        for pkg in packages:  # the packager's signature, as pacman's SigLevel=Required wants
            run(
                [
                    "gpg",
                    "--homedir",
                    str(gnupg),
                    "--batch",
                    "--yes",
                    "--local-user",
                    fpr,
                    "--detach-sign",
                    "--no-armor",
                    str(pkg),
                ],
                quiet=True,
            )

        step("3. Create the signed repository with reposeal (repo-add's options, plus more)")
        db = repo / "demo.db.tar.gz"
        sign = ["--sign", "--key", fpr, "--gnupghome", str(gnupg)]
        run([*REPOSEAL, "db", "add", *sign, str(db), *map(str, packages)])
        run(["ls", "-l", str(repo)])
        run([*REPOSEAL, "db", "verify", "--gnupghome", str(gnupg), str(db)])

        step("4. A downgrade is refused (exit 3) and nothing on disk changes")
        before = {p: p.read_bytes() for p in (repo / "demo.current").iterdir()}
        older = write_package(repo, "hello-reposeal", "0.9-1")
        proc = run([*REPOSEAL, "db", "add", *sign, str(db), str(older)], check=False)
        assert proc.returncode == 3, proc.returncode
        assert {p: p.read_bytes() for p in (repo / "demo.current").iterdir()} == before
        older.unlink()
        print("refused as expected; the signed database is untouched")

        step("5. The real pacman (scratch root, trusts only the repo key) syncs and installs")
        scratch.base.mkdir()
        scratch.trust(public, fpr)
        scratch.write_conf("Required DatabaseRequired")
        print(scratch.conf.read_text())
        run(scratch.command("-Sy"))
        run(scratch.command("-S", "world-reposeal"))
        greeting = scratch.root / "usr/share/hello-reposeal/greeting"
        print(f"{greeting.relative_to(OUT)}: {greeting.read_text().strip()}")

        enclave_pipeline(packages, (public, fpr))
        step(
            "Demo complete: makepkg-built packages, installed by pacman from a repository signed "
            "by reposeal db, then from one signed by the enclave only on quorum evidence"
        )
    finally:
        for home in (gnupg, scratch.gpgdir, *enclave_homes):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                check=False,
            )


if __name__ == "__main__":
    main()
