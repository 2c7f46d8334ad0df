#!/usr/bin/env python3
"""`make demo`: the whole system on this machine, with real tools.

1-5. `reposeal db`, repo-add made safe: a key, two makepkg builds, a signed repository, a
     refused downgrade, pacman installing from it;
6-16. the three machines of the design (demo/pipeline.py): source, two builders, repo
     machine, enclave and three witnesses on 127.0.0.1; a change approved, built twice,
     signed, witnessed, installed; a rogue insider, a replaying mirror and a forked log
     (the log's keys stolen) refused; the log audited.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from reposeal.alpm.synthetic import write_package
from reposeal.builder.makepkg import build
from reposeal.client.scratch import ScratchPacman
from reposeal.openpgp.gpg import generate_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import full_pipeline

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

        full_pipeline(OUT, run, step)
        step(
            "Demo complete: a repository signed by `reposeal db`; then the three machines, "
            "where only a quorum of maintainers and builders gets a package signed, and every "
            "attempt of a rogue insider or a replaying mirror is refused"
        )
    finally:
        for home in (gnupg, scratch.gpgdir):
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                check=False,
            )


if __name__ == "__main__":
    main()
