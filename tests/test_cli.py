"""The command line: exit codes, --json, --help, and nothing half-written on errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reposeal.alpm.synthetic import write_package


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reposeal.cli", *args], capture_output=True, text=True, check=False
    )


def listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_help_explains() -> None:
    out = cli("db", "add", "--help")
    assert out.returncode == 0
    for word in (
        "--sign",
        "--key",
        "--verify",
        "--new",
        "--remove",
        "--include-sigs",
        "--allow-downgrade",
        "--json",
        "Exit codes",
    ):
        assert word in out.stdout


def test_add_remove_json_and_exit_codes(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db.tar.zst")
    a1 = write_package(tmp_path, "a", "1-1")
    b1 = write_package(tmp_path, "b", "1-1")
    out = cli("db", "add", "--json", db, str(a1), str(b1))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] and doc["added"] == ["a 1-1", "b 1-1"] and doc["packages"] == 2

    a2 = write_package(tmp_path, "a", "2-1")
    out = cli("db", "add", "--json", "-R", db, str(a2))
    assert json.loads(out.stdout)["upgraded"] == ["a 1-1 -> 2-1"]
    assert not a1.exists()  # -R removed the replaced file

    before = listing(tmp_path)
    a0 = write_package(tmp_path, "a", "0.5-1")
    before[a0.name] = a0.read_bytes()
    out = cli("db", "add", "--json", db, str(a0))
    assert out.returncode == 3
    assert "older" in json.loads(out.stdout)["reasons"][0]
    assert listing(tmp_path) == before

    out = cli("db", "add", "-p", "--json", db, str(a0))  # repo-add -p: skip quietly
    assert out.returncode == 0 and json.loads(out.stdout)["skipped"]

    out = cli("db", "remove", "--json", db, "b")
    assert json.loads(out.stdout)["removed"] == ["b 1-1"]
    assert cli("db", "remove", db, "b").returncode == 3

    out = cli("db", "verify", "--json", "--allow-unsigned", db)
    assert out.returncode == 0 and json.loads(out.stdout)["packages"] == 1
    assert cli("db", "verify", db).returncode == 1  # unsigned is not valid by default


def test_bad_package_leaves_database_untouched(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db.tar.gz")
    good = write_package(tmp_path, "good", "1-1")
    assert cli("db", "add", db, str(good)).returncode == 0
    before = listing(tmp_path)
    bad = tmp_path / "bad-1-1-any.pkg.tar.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"not really zstd" * 10)
    other = write_package(tmp_path, "other", "1-1")
    before[bad.name], before[other.name] = bad.read_bytes(), other.read_bytes()
    out = cli("db", "add", db, str(other), str(bad))
    assert out.returncode == 1
    assert "bad-1-1-any.pkg.tar.zst" in out.stderr
    assert listing(tmp_path) == before


def test_usage_errors(tmp_path: Path) -> None:
    assert cli("db", "add").returncode == 2
    out = cli("db", "add", str(tmp_path / "r.zip"))
    assert out.returncode == 1 and "extension" in out.stderr
    out = cli(
        "db",
        "add",
        "--sign",
        "--key",
        "DEADBEEF",
        "--gnupghome",
        str(tmp_path),
        str(tmp_path / "r.db.tar.gz"),
    )
    assert out.returncode == 6 and "not in the gpg keyring" in out.stderr


def test_diff_and_vercmp(tmp_path: Path) -> None:
    db = tmp_path / "r.db.tar.gz"
    cli("db", "add", str(db), str(write_package(tmp_path, "a", "1-1")))
    old = tmp_path / "old.db.tar.gz"
    old.write_bytes(db.read_bytes())
    cli(
        "db",
        "add",
        str(db),
        str(write_package(tmp_path, "a", "2-1")),
        str(write_package(tmp_path, "n", "1-1")),
    )
    out = json.loads(cli("db", "diff", "--json", str(old), str(db)).stdout)
    assert out["upgraded"] == ["a 1-1 -> 2-1"] and out["added"] == ["n - -> 1-1"]
    assert cli("vercmp", "1:1", "2").stdout.strip() == "1"
