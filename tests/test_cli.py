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


def test_db_verify_checks_the_package_files_beside_the_database(tmp_path: Path) -> None:
    pkg = write_package(tmp_path, "foo", "1-1")
    write_package(tmp_path, "Bar_Capital", "1-1")
    db = str(tmp_path / "r.db.tar.gz")
    added = cli("db", "add", db, str(pkg), str(tmp_path / "Bar_Capital-1-1-any.pkg.tar.zst"))
    assert added.returncode == 0, added.stderr
    ok = cli("db", "verify", "--json", "--allow-unsigned", db)
    assert ok.returncode == 0, ok.stdout
    pkg.write_bytes(b"")  # another file under the same name
    changed = json.loads(cli("db", "verify", "--json", "--allow-unsigned", db).stdout)
    assert not changed["ok"] and any("foo" in p for p in changed["problems"]), changed
    pkg.unlink()
    missing = json.loads(cli("db", "verify", "--json", "--allow-unsigned", db).stdout)
    assert any("not beside the database" in p for p in missing["problems"]), missing
    skipped = cli("db", "verify", "--json", "--allow-unsigned", "--no-packages", db)
    assert skipped.returncode == 0, skipped.stdout


def test_db_verify_refuses_what_pacman_would_read_otherwise(tmp_path: Path) -> None:
    """A second line in a single-valued field (libalpm reads it as a header), NUL bytes,
    and lines past libalpm's 512 KiB."""
    from reposeal.alpm import compression
    from reposeal.alpm.tarformat import END_OF_ARCHIVE, tar_member

    base = b"%FILENAME%\nfoo-1-1-any.pkg.tar.zst\n\n%NAME%\nfoo\n\n%VERSION%\n1-1\n\n"
    base += b"%SHA256SUM%\n" + b"0" * 64 + b"\n\n"
    cases = {
        "hidden": base + b"%PACKAGER%\nme\n%FILENAME%\nevil-1-1-any.pkg.tar.zst\n\n",
        "nul": base + b"%DESC%\nfoo\0bar\n\n",
        "long": base + b"%DESC%\n" + b"x" * (600 << 10) + b"\n\n",
    }
    for case, desc in cases.items():
        folder = tmp_path / case
        folder.mkdir()
        members = [tar_member("foo-1-1/", None, 0), tar_member("foo-1-1/desc", desc, 0)]
        db = folder / "r.db.tar.gz"
        db.write_bytes(compression.compress([*members, END_OF_ARCHIVE], compression.GZIP))
        out = cli("db", "verify", "--allow-unsigned", "--no-packages", str(db))
        assert out.returncode != 0, (case, out.stdout, out.stderr)


def test_usage_errors_exit_2_and_ctrl_c_exits_130(tmp_path: Path) -> None:
    import signal

    assert cli("db", "add").returncode == 2  # a missing argument
    pkg = write_package(tmp_path, "foo", "1-1")
    db = tmp_path / "r.db.tar.gz"
    both = cli("db", "add", "--signer", "soft:/x", "--sign", str(db), str(pkg))
    assert both.returncode == 2, both.stderr
    import fcntl
    import os

    lock = tmp_path / "r.db.tar.gz.lck"  # another writer holds the lock, alive
    lock.write_text(f"{os.getpid()}\n")
    held = os.open(lock, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reposeal.cli", "db", "add", "--wait", "60", str(db), str(pkg)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    while "Adding package" not in proc.stderr.readline():  # past start-up: then the lock
        assert proc.poll() is None, "db add ended before it waited for the lock"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    os.close(held)
    assert proc.returncode == 130, err
    assert not db.exists()  # nothing written


def test_bridge_pki_with_a_host_name_for_ip_is_a_usage_error(tmp_path: Path) -> None:
    out = cli("bridge", "pki", str(tmp_path / "pki"), "--ip", "repo.example.org")
    assert out.returncode == 2 and "not an IP address" in out.stderr
    assert not (tmp_path / "pki").exists()


def test_a_folder_without_permission_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    import os
    import shutil

    import pytest

    folder = tmp_path / "ro"
    folder.mkdir()
    pkg = write_package(folder, "foo", "1-1")
    os.chmod(tmp_path, 0o755)
    os.chmod(folder, 0o555)
    as_nobody = ["runuser", "-u", "nobody", "--", sys.executable]
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to run a command as another user")
    if subprocess.run([*as_nobody, "-c", "import reposeal"], capture_output=True).returncode:
        pytest.skip("this checkout is not readable by another user")
    for extra in ([], ["--json"]):
        out = subprocess.run(
            [*as_nobody, "-m", "reposeal.cli", "db", "add", *extra,
             str(folder / "r.db.tar.gz"), str(pkg)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert out.returncode == 1 and "Permission denied" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
        if extra:
            assert json.loads(out.stdout)["ok"] is False


def test_man_pages_and_completion_come_from_the_commands(tmp_path: Path) -> None:
    import os

    cli = [sys.executable, "-m", "reposeal.cli"]
    subprocess.run([*cli, "man", "-o", str(tmp_path)], check=True, capture_output=True)
    page = tmp_path / "reposeal-db-add.1"
    assert page.exists() and (tmp_path / "reposeal.1").exists()
    shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                           env=os.environ | {"MANWIDTH": "100"}, check=True).stdout  # fmt: skip
    assert "SYNOPSIS" in shown and "--replace-same-version" in shown and "EXIT STATUS" in shown
    script = subprocess.run([*cli, "completion", "bash"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    assert "_REPOSEAL_COMPLETE=bash_complete" in script
    reposeal = str(Path(sys.executable).with_name("reposeal"))
    env = os.environ | {"COMP_WORDS": "reposeal db a", "COMP_CWORD": "2",
                        "_REPOSEAL_COMPLETE": "bash_complete"}  # fmt: skip
    words = subprocess.run([reposeal], env=env, capture_output=True, text=True).stdout
    assert "plain,add" in words.splitlines(), words
