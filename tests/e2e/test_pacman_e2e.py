"""End to end with the real makepkg, gpg, repo-add and pacman."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tools
from tests.conftest import GpgKey, Pacman

pytestmark = pytest.mark.e2e


def reposeal(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"reposeal {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def add_signed(pacman: Pacman, key: GpgKey, *pkgs: Path, extra: tuple[str, ...] = ()) -> str:
    copied = []
    for p in pkgs:
        dest = pacman.repo_dir / p.name
        if not dest.exists():
            shutil.copy2(p, dest)
            tools.gpg_sign_file(key.home, key.fingerprint, dest)  # SigLevel Required: packages too
        copied.append(str(dest))
    db = str(pacman.repo_dir / "demo.db.tar.gz")
    args = ("db", "add", "--sign", "--key", key.fingerprint, "--gnupghome", str(key.home))
    return reposeal(*args, *extra, db, *copied).stderr


def reposeal_desc(db: Path) -> str:
    return tools.run(["bsdtar", "-xOf", str(db)]).stdout.decode()


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every name in a folder with its bytes (or link target): 'unchanged' means this."""
    out: dict[str, bytes | str] = {}
    for p in sorted(directory.rglob("*")):
        rel = str(p.relative_to(directory))
        if p.is_symlink():
            out[rel] = "-> " + str(p.readlink())
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def test_signed_database_is_synced_and_installed_by_pacman(
    pacman: Pacman, gpg_key: GpgKey, built_packages: dict[str, Path]
) -> None:
    add_signed(pacman, gpg_key, built_packages["hello-1.0"], built_packages["world-2.0"])
    pacman.run("-Sy")
    pacman.run("-S", "world")  # pulls hello as a dependency
    root = pacman.scratch.root
    assert (root / "usr/share/world/message").read_text() == "world 2.0\n"
    assert (root / "usr/share/hello/message").read_text() == "hello 1.0\n"
    # the signature also verifies with gpg itself
    tools.run(
        [
            "gpg",
            "--homedir",
            str(gpg_key.home),
            "--verify",
            str(pacman.repo_dir / "demo.db.sig"),
            str(pacman.repo_dir / "demo.db"),
        ]
    )
    # an upgrade reaches pacman too
    add_signed(pacman, gpg_key, built_packages["hello-1.1"])
    pacman.run("-Syu")
    assert (root / "usr/share/hello/message").read_text() == "hello 1.1\n"


def test_tampered_database_is_rejected_by_pacman(
    pacman: Pacman, gpg_key: GpgKey, built_packages: dict[str, Path]
) -> None:
    add_signed(pacman, gpg_key, built_packages["hello-1.0"])
    db = (pacman.repo_dir / "demo.db.tar.gz").resolve()
    data = bytearray(db.read_bytes())
    data[len(data) // 2] ^= 0x01
    db.write_bytes(bytes(data))
    proc = pacman.run("-Sy", check=False)
    assert proc.returncode != 0
    assert "signature" in (proc.stdout + proc.stderr).lower()


def test_database_signed_by_unknown_key_is_rejected_by_pacman(
    pacman: Pacman, stranger_key: GpgKey, built_packages: dict[str, Path]
) -> None:
    add_signed(pacman, stranger_key, built_packages["hello-1.0"])
    proc = pacman.run("-Sy", check=False)
    assert proc.returncode != 0
    assert (
        "unknown public key" in (proc.stdout + proc.stderr).lower()
        or "signature" in (proc.stdout + proc.stderr).lower()
    )


def test_downgrade_is_refused_and_nothing_changes(
    pacman: Pacman, gpg_key: GpgKey, built_packages: dict[str, Path]
) -> None:
    add_signed(pacman, gpg_key, built_packages["hello-1.1"])
    before = snapshot(pacman.repo_dir)
    old = pacman.repo_dir / built_packages["hello-1.0"].name
    shutil.copy2(built_packages["hello-1.0"], old)
    before[old.name] = old.read_bytes()
    db = str(pacman.repo_dir / "demo.db.tar.gz")
    proc = reposeal(
        "db",
        "add",
        "--sign",
        "--key",
        gpg_key.fingerprint,
        "--gnupghome",
        str(gpg_key.home),
        db,
        str(old),
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "older than 1.1-1" in proc.stderr
    assert snapshot(pacman.repo_dir) == before
    pacman.run("-Sy")  # still the valid, signed database


def test_repo_add_extends_reposeal_database_and_back(
    pacman: Pacman, gpg_key: GpgKey, built_packages: dict[str, Path]
) -> None:
    add_signed(pacman, gpg_key, built_packages["hello-1.0"])
    # repo-add (6.0.2, gpg from GNUPGHOME) extends what reposeal wrote ...
    hello11 = pacman.repo_dir / built_packages["hello-1.1"].name
    shutil.copy2(built_packages["hello-1.1"], hello11)
    tools.gpg_sign_file(gpg_key.home, gpg_key.fingerprint, hello11)
    tools.run(
        [
            "repo-add",
            "--sign",
            "--key",
            gpg_key.fingerprint,
            str(pacman.repo_dir / "demo.db.tar.gz"),
            str(hello11),
        ],
        env={"GNUPGHOME": str(gpg_key.home), "PATH": "/usr/bin:/bin"},
    )
    pacman.run("-Sy")
    assert "hello 1.1-1" in pacman.run("-Si", "hello").stdout.replace(
        "Version         : ", "hello "
    )
    # ... and reposeal extends what repo-add wrote
    add_signed(pacman, gpg_key, built_packages["world-2.0"])
    pacman.run("-Sy")
    pacman.run("-S", "world")
    assert (pacman.root / "root" / "usr/share/hello/message").read_text() == "hello 1.1\n"
    assert (
        reposeal(
            "db",
            "verify",
            "--gnupghome",
            str(gpg_key.home),
            str(pacman.repo_dir / "demo.db.tar.gz"),
        ).returncode
        == 0
    )


@pytest.mark.parametrize("with_sigs", [False, True])
def test_entries_are_byte_identical_to_repo_add(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey, with_sigs: bool
) -> None:
    pkgs = [built_packages["hello-1.0"], built_packages["world-2.0"]]
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    for d in (theirs, ours):
        d.mkdir()
        for p in pkgs:
            shutil.copy2(p, d / p.name)
    if with_sigs:  # repo-add 6.0.2 always embeds .sig files; reposeal with --include-sigs
        for p in pkgs:
            sig = tools.gpg_sign_file(gpg_key.home, gpg_key.fingerprint, theirs / p.name)
            shutil.copy2(sig, ours / sig.name)
    tools.run(["repo-add", str(theirs / "r.db.tar.gz"), *(str(theirs / p.name) for p in pkgs)])
    flags = ["--include-sigs"] if with_sigs else []
    reposeal("db", "add", *flags, str(ours / "r.db.tar.gz"), *(str(ours / p.name) for p in pkgs))
    for which in ("db", "files"):
        listing = {}
        for side in (theirs, ours):
            out = side / f"x-{which}"
            out.mkdir()
            tools.run(["bsdtar", "-xf", str(side / f"r.{which}.tar.gz"), "-C", str(out)])
            listing[side] = snapshot(out)
        assert listing[theirs] == listing[ours]
        assert len(listing[ours]) == (2 if which == "db" else 4)


@pytest.mark.parametrize("ext", ["gz", "zst"])
def test_pacman_reads_multi_chunk_sync_and_files_databases(
    pacman: Pacman, gpg_key: GpgKey, ext: str
) -> None:
    from reposeal.alpm.synthetic import write_package

    pkgs = [write_package(pacman.repo_dir, f"many{i:04d}", "1.0-1") for i in range(600)]
    db = pacman.repo_dir / f"demo.db.tar.{ext}"
    args = (
        "db",
        "add",
        "-q",
        "--sign",
        "--key",
        gpg_key.fingerprint,
        "--gnupghome",
        str(gpg_key.home),
    )
    reposeal(*args, str(db), *map(str, pkgs))
    # a second update goes through the chunk index
    reposeal(*args, str(db), str(write_package(pacman.repo_dir, "many0300", "2.0-1")))
    index = json.loads((pacman.repo_dir / "demo.current/demo.index.json").read_text())
    assert len(index["chunks"]) >= 3
    pacman.run("-Sy")
    listed = pacman.run("-Sl", "demo").stdout.splitlines()
    assert len(listed) == 600
    assert "demo many0300 2.0-1" in listed
    pacman.run("-Fy")
    assert "usr/share/many0450/README" in pacman.run("-Fl", "many0450").stdout


def test_pacman_accepts_databases_with_embedded_signatures(
    pacman: Pacman, gpg_key: GpgKey, built_packages: dict[str, Path]
) -> None:
    # pacman 6 fetches NAME.pkg.tar.zst.sig itself; %PGPSIG% is for older clients
    add_signed(pacman, gpg_key, built_packages["hello-1.0"], extra=("--include-sigs",))
    assert "%PGPSIG%" in reposeal_desc(pacman.repo_dir / "demo.db.tar.gz")
    pacman.run("-Sy")
    pacman.run("-S", "hello")
    assert (pacman.scratch.root / "usr/share/hello/message").read_text() == "hello 1.0\n"
