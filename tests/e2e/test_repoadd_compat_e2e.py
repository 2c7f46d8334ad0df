"""Issue 17: `repo-add`/`repo-remove` as aurutils, repoctl and CI scripts call them: links
named repo-add and repo-remove run reposeal's, with repo-add 6.x's options and exit codes;
a database path given through realpath (inside the generations) is the repository's; a
signed repository updated without -s is refused instead of published unsigned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tools
from tests.conftest import GpgKey

pytestmark = pytest.mark.e2e


def run(cmd: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"GNUPGHOME": str(home)}
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def test_repo_add_links_work_as_aurutils_calls_them(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey
) -> None:
    bindir = tmp_path / "bin"
    made = tools.run_text([str(Path(sys.executable).with_name("reposeal")), "db",
                           "install-links", str(bindir)])  # fmt: skip
    assert (bindir / "repo-add").is_symlink(), made.stdout
    repo = tmp_path / "custom"
    repo.mkdir()
    for key in ("hello-1.0", "world-2.0"):
        shutil.copy2(built_packages[key], repo / built_packages[key].name)
    hello, world = (repo / built_packages[k].name for k in ("hello-1.0", "world-2.0"))
    add, remove = str(bindir / "repo-add"), str(bindir / "repo-remove")
    db = repo / "custom.db.tar.gz"

    first = run([add, "-s", "-k", gpg_key.fingerprint, "--wait-for-lock", str(db), str(hello)],
                gpg_key.home)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert "==> Adding package" in first.stdout and "Creating updated database" in first.stdout

    # aurutils hands over the path as realpath gives it: inside a generation
    real = os.path.realpath(db)
    assert ".generations" in real
    second = run([add, "-s", "-k", gpg_key.fingerprint, real, str(world)], gpg_key.home)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not list(repo.glob("custom.generations/*/custom.generations")), "no nesting"
    listed = tools.run_text(["bsdtar", "-tf", str(db)]).stdout
    assert "hello-1.0-1/desc" in listed and "world-2.0-1/desc" in listed

    # nothing to do is exit 0, as repo-add 6 (which writes the database again; we do not)
    again = run([add, "-n", "-s", "-k", gpg_key.fingerprint, str(db), str(hello)], gpg_key.home)
    assert again.returncode == 0 and "Nothing changed" in again.stdout, again.stdout

    # a signed repository updated without -s (a tool that calls plain repo-add): signed
    # with the key it remembers, not published unsigned
    removed = run([remove, str(db), "world"], gpg_key.home)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"signing with gpg:{gpg_key.fingerprint}" in removed.stdout, removed.stdout
    assert "world-2.0-1/desc" not in tools.run_text(["bsdtar", "-tf", str(db)]).stdout
    verified = tools.run_text(["gpg", "--homedir", str(gpg_key.home), "--verify",
                               str(db) + ".sig", str(db)], check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stderr

    # `aur build -f`: a rebuild of a listed version; refused by default, naming the option
    from reposeal.alpm.synthetic import write_package

    rebuilt_dir = tmp_path / "rebuild"
    rebuilt_dir.mkdir()
    rebuilt = write_package(rebuilt_dir, "hello", "1.0-1", "any", files={"usr/share/x": b"y"})
    signing = ["-s", "-k", gpg_key.fingerprint]
    refused = run([add, *signing, str(db), str(rebuilt)], gpg_key.home)
    assert refused.returncode == 1 and "--replace-same-version" in refused.stderr, refused.stderr
    replaced = run([add, *signing, "--replace-same-version", str(db), str(rebuilt)], gpg_key.home)
    assert replaced.returncode == 0 and "REPLACED" in replaced.stderr, replaced.stderr
    # or as a setting the repository keeps, for the tools that call plain repo-add
    tools.run_text([sys.executable, "-m", "reposeal.cli", "db", "settings", str(db),
                    "--replace-same-version", "on"])  # fmt: skip
    again_dir = tmp_path / "rebuild2"
    again_dir.mkdir()
    again_pkg = write_package(again_dir, "hello", "1.0-1", "any", files={"usr/share/x": b"z"})
    kept = run([add, *signing, str(db), str(again_pkg)], gpg_key.home)
    assert kept.returncode == 0 and "REPLACED" in kept.stderr, kept.stderr

    usage = run([add], gpg_key.home)
    assert usage.returncode == 1, "repo-add exits 1 on a usage error"


def test_old_is_always_the_previous_database_whoever_wrote_last(
    tmp_path: Path, built_packages: dict[str, Path]
) -> None:
    """NAME.db.tar.gz.old is the database before the last write, by reposeal or by the real
    repo-add (which renames a link into NAME.current to .old)."""
    repo = tmp_path / "mixed"
    repo.mkdir()
    pkgs = {k: repo / built_packages[k].name for k in ("hello-1.0", "world-2.0", "hello-1.1")}
    for k, p in pkgs.items():
        shutil.copy2(built_packages[k], p)
    db = repo / "mixed.db.tar.gz"
    reposeal = [sys.executable, "-m", "reposeal.cli", "db", "add", "-q", str(db)]
    old = repo / "mixed.db.tar.gz.old"
    tools.run_text([*reposeal, str(pkgs["hello-1.0"])])
    first = db.read_bytes()
    tools.run(["repo-add", "-q", str(db), str(pkgs["world-2.0"])])  # the real one
    assert old.read_bytes() == first
    second = db.read_bytes()
    tools.run_text([*reposeal, str(pkgs["hello-1.1"])])
    assert old.read_bytes() == second, ".old is the database repo-add wrote"
    third = db.read_bytes()
    tools.run_text([*reposeal[:-1], "--allow-downgrade", str(db), str(pkgs["hello-1.0"])])
    assert old.read_bytes() == third, "and after a reposeal write, the one before it"
    listed = tools.run_text(["bsdtar", "-tf", str(db)]).stdout
    assert "hello-1.0-1/desc" in listed and "world-2.0-1/desc" in listed


def test_an_expiring_signature_keeps_expiring_through_updates_and_refreshes(
    tmp_path: Path, built_packages: dict[str, Path]
) -> None:
    """`db refresh` and `db add` without --sig-expires keep the lifetime the current
    signature has: an expiring repository never quietly gets an eternal signature."""
    import pysequoia

    key = tmp_path / "repo.key"
    cli = [sys.executable, "-m", "reposeal.cli"]
    tools.run_text([*cli, "key", "generate", "--signer", f"soft:{key}", "--uid", "R <r@x>"])
    repo = tmp_path / "exp"
    repo.mkdir()
    db = repo / "exp.db.tar.gz"
    signer = ["--signer", f"soft:{key}"]

    def lifetime() -> float:
        sig = pysequoia.Sig.from_bytes((repo / "exp.db.tar.gz.sig").read_bytes())
        assert sig.expiration is not None and sig.created is not None
        return (sig.expiration - sig.created).total_seconds()

    tools.run_text([*cli, "db", "add", *signer, "--sig-expires", "2h", str(db),
                    str(built_packages["hello-1.0"])])  # fmt: skip
    assert lifetime() == 7200
    tools.run_text([*cli, "db", "refresh", *signer, str(db)])
    assert lifetime() == 7200, "refresh kept it"
    tools.run_text([*cli, "db", "add", *signer, str(db), str(built_packages["world-2.0"])])
    assert lifetime() == 7200, "an update kept it"
    # the repository remembers key and lifetime: refresh and remove need no signing options
    remembered = json.loads((repo / "exp.reposeal.json").read_text())["signing"]
    assert remembered["signer"] == f"soft:{key}" and remembered["expires_in"] == 7200
    tools.run_text([*cli, "db", "refresh", str(db)])
    assert lifetime() == 7200
    tools.run_text([*cli, "db", "remove", str(db), "world"])
    assert lifetime() == 7200, "signed as remembered"
    tools.run_text([*cli, "db", "add", *signer, str(db), str(built_packages["world-2.0"])])

    # another key only when asked; unsigned only when asked
    other = tmp_path / "other.key"
    tools.run_text([*cli, "key", "generate", "--signer", f"soft:{other}", "--uid", "O <o@x>"])
    switch = [*cli, "db", "remove", "--signer", f"soft:{other}", str(db), "world"]
    refused = subprocess.run(switch, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "--new-key" in refused.stderr, refused.stderr
    tools.run_text([*switch, "--new-key"])
    remembered = json.loads((repo / "exp.reposeal.json").read_text())["signing"]
    assert remembered["signer"] == f"soft:{other}", "the new key is remembered"
    unsigned = [*cli, "db", "add", str(db), str(built_packages["world-2.0"])]
    tools.run_text([*unsigned, "--unsigned"])
    assert not (repo / "exp.db.tar.gz.sig").exists(), "published unsigned, as asked"
    assert json.loads((repo / "exp.reposeal.json").read_text())["signing"] is None
    tools.run_text([*cli, "db", "remove", str(db), "world"])  # unsigned now, as told
    assert not (repo / "exp.db.tar.gz.sig").exists()


def test_a_repository_repo_add_signed_is_not_published_unsigned(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey
) -> None:
    """Signed by the real repo-add (nothing remembered): an update without -s is refused,
    naming the options; the database is left as it was."""
    repo = tmp_path / "theirs"
    repo.mkdir()
    db = repo / "theirs.db.tar.gz"
    first = run(["repo-add", "-s", "-k", gpg_key.fingerprint, str(db),
                 str(built_packages["hello-1.0"])], gpg_key.home)  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = db.read_bytes()
    cli = [sys.executable, "-m", "reposeal.cli", "repo-add"]
    refused = run([*cli, str(db), str(built_packages["world-2.0"])], gpg_key.home)
    assert refused.returncode == 1 and "is signed" in refused.stderr, refused.stderr
    assert "--unsigned" in refused.stderr and db.read_bytes() == before
    kept = run([*cli, "-s", "-k", gpg_key.fingerprint, str(db), str(built_packages["world-2.0"])],
               gpg_key.home)  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    again = run([*cli, str(db), str(built_packages["hello-1.1"])], gpg_key.home)
    assert again.returncode == 0, "from now on it remembers: " + again.stderr
    verified = run(["gpg", "--verify", str(db) + ".sig", str(db)], gpg_key.home)
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize(
    ("suffix", "magic"),
    [
        ("lz4", b"\x04\x22\x4d\x18"),
        ("lrz", b"LRZI"),
        ("lzo", b"\x89LZO"),
        ("Z", b"\x1f\x9d"),
        ("lz", b"LZIP"),
    ],
)
def test_every_compression_repo_add_accepts(
    tmp_path: Path, built_packages: dict[str, Path], suffix: str, magic: bytes
) -> None:
    """NAME.db.tar.{lz4,lrz,lzo,Z,lz}: written by reposeal, extended by the real repo-add
    and by reposeal again, read by the real pacman."""
    from reposeal.client.scratch import ScratchPacman

    repo = tmp_path / "lz"
    repo.mkdir()
    pkgs = {k: repo / built_packages[k].name for k in ("hello-1.0", "world-2.0", "hello-1.1")}
    for k, p in pkgs.items():
        shutil.copy2(built_packages[k], p)
    db = repo / f"lz.db.tar.{suffix}"
    reposeal = [sys.executable, "-m", "reposeal.cli", "db", "add", "-q", str(db)]
    tools.run_text([*reposeal, str(pkgs["hello-1.0"])])
    assert db.read_bytes().startswith(magic), db.read_bytes()[:8]
    tools.run(["repo-add", "-q", str(db), str(pkgs["world-2.0"])])
    tools.run_text([*reposeal, str(pkgs["hello-1.1"])])
    verified = tools.run_text([sys.executable, "-m", "reposeal.cli", "db", "verify",
                               "--allow-unsigned", str(db)])  # fmt: skip
    assert "2 packages, valid" in verified.stdout, verified.stdout + verified.stderr
    scratch = ScratchPacman(tmp_path / "pacman", {"lz": repo})
    scratch.base.mkdir()
    scratch.write_conf("Never")
    tools.run_text(scratch.command("-Sy"))
    listed = tools.run_text(scratch.command("-Sl", "lz")).stdout
    assert "lz hello 1.1-1" in listed and "lz world 2.0-1" in listed, listed


def test_rollback_publishes_an_earlier_generation_pacman_then_takes(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey
) -> None:
    """`db rollback`: an earlier generation published again as a new one (pacman, which
    skips a database no newer than its copy, takes it); lowering a version needs
    --allow-downgrade; signed anew with the remembered key."""
    from reposeal.client.scratch import ScratchPacman

    repo = tmp_path / "rb"
    repo.mkdir()
    for k in ("hello-1.0", "hello-1.1", "world-2.0"):
        shutil.copy2(built_packages[k], repo / built_packages[k].name)
    db = repo / "rb.db.tar.gz"
    cli = [sys.executable, "-m", "reposeal.cli", "db"]
    signing = ["-s", "-k", gpg_key.fingerprint]
    for k in ("hello-1.0", "hello-1.1"):
        made = run([*cli, "add", *signing, str(db), str(repo / built_packages[k].name)],
                   gpg_key.home)  # fmt: skip
        assert made.returncode == 0, made.stderr
    scratch = ScratchPacman(tmp_path / "pacman", {"rb": repo})
    scratch.base.mkdir()
    scratch.trust(gpg_key.public, gpg_key.fingerprint)
    scratch.write_conf()
    tools.run_text(scratch.command("-Sy"))
    assert "rb hello 1.1-1" in tools.run_text(scratch.command("-Sl", "rb")).stdout

    listed = run([*cli, "generations", str(db)], gpg_key.home).stdout.split("\n")
    assert [line.split() for line in listed if line] == [["000001"], ["*", "000002"]]
    before = db.read_bytes()
    refused = run([*cli, "rollback", str(db)], gpg_key.home)
    assert refused.returncode == 3 and "--allow-downgrade" in refused.stdout + refused.stderr
    assert db.read_bytes() == before, "nothing written"
    missing = run([*cli, "rollback", "--to", "7", str(db)], gpg_key.home)
    assert missing.returncode == 1 and "kept: 000001, 000002" in missing.stderr, missing.stderr

    done = run([*cli, "rollback", "--allow-downgrade", str(db)], gpg_key.home)
    assert done.returncode == 0, done.stderr
    assert "hello 1.1-1 -> 1.0-1" in done.stderr and "signing with gpg:" in done.stderr
    tools.run_text(scratch.command("-Sy"))
    assert "rb hello 1.0-1" in tools.run_text(scratch.command("-Sl", "rb")).stdout

    # kept signatures when there is no signer at all: an unsigned repository rolls back too
    plain = tmp_path / "plain"
    plain.mkdir()
    pdb = plain / "plain.db.tar.zst"
    for k in ("hello-1.0", "world-2.0"):
        tools.run_text([*cli, "add", "-q", str(pdb), str(built_packages[k])])
    tools.run_text([*cli, "rollback", str(pdb)])  # world leaves: not a downgrade
    assert "world" not in tools.run_text(["bsdtar", "-tf", str(pdb)]).stdout
    assert (plain / "plain.db.tar.zst.old").exists()


def _listing(db: Path) -> list[str]:
    return sorted(n for n in tools.run_text(["bsdtar", "-tf", str(db)]).stdout.split() if n)


def _as_scripts_call_it(
    style: str, prog: dict[str, str], repo: Path, pkgs: dict[str, Path], key: GpgKey
) -> list[tuple[int, list[str]]]:
    """Run one tool's way of calling repo-add in ``repo``; each step's exit code and the
    package files left beside the database."""
    db = repo / "custom.db.tar.zst"
    sign = ["-s", "-k", key.fingerprint]

    def put(*keys: str) -> list[str]:
        for k in keys:
            shutil.copy2(pkgs[k], repo / pkgs[k].name)
        return [pkgs[k].name for k in keys]

    def call(args: list[str]) -> tuple[int, list[str]]:
        env = os.environ | {"GNUPGHOME": str(key.home), "LANG": "C"}
        proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, check=False)
        return proc.returncode, sorted(p.name for p in repo.glob("*.pkg.tar*"))

    def every_package() -> list[str]:
        return sorted(f"./{p.name}" for p in repo.glob("*.pkg.tar.zst"))

    add, remove = prog["repo-add"], prog["repo-remove"]
    steps = []
    if style == "ci":  # cd repo && repo-add -n -R -s -k KEY ./custom.db.tar.zst ./*.pkg.tar.zst
        put("hello-1.0", "world-2.0")
        steps.append(call([add, "-n", "-R", *sign, "./custom.db.tar.zst", *every_package()]))
        put("hello-1.1")
        steps.append(call([add, "-n", "-R", *sign, "./custom.db.tar.zst", *every_package()]))
        steps.append(call([add, "-n", "-R", *sign, "./custom.db.tar.zst", *every_package()]))
    elif style == "aurutils":  # env -C db_root repo-add -s -v -R "$(realpath db)" basenames
        steps.append(call([add, *sign, str(db), *put("hello-1.0")]))
        for k in ("hello-1.1", "world-2.0"):
            steps.append(call([add, *sign, "-v", "-R", os.path.realpath(db), *put(k)]))
        steps.append(call([add, "-v", os.path.realpath(db)]))  # verify only
    else:  # repoctl: absolute paths, packages moved in first, removals by name
        given = [str(repo / n) for n in put("hello-1.0", "world-2.0")]
        steps.append(call([add, *sign, str(db), *given]))
        steps.append(call([remove, *sign, str(db), "world"]))
        steps.append(call([remove, *sign, str(db), "world"]))  # no longer there: 1
        steps.append(call([remove, *sign, str(db), "hello"]))  # an empty database
    return steps


@pytest.mark.parametrize("style", ["ci", "aurutils", "repoctl"])
def test_scripts_get_what_the_real_repo_add_gives_them(
    tmp_path: Path, built_packages: dict[str, Path], gpg_key: GpgKey, style: str
) -> None:
    """The same command lines, run by the real repo-add in one folder and by reposeal's
    repo-add link in another: the same exit codes, the same entries, the same package files
    left on disk, and both databases signed so that gpg verifies them."""
    bindir = tmp_path / "bin"
    tools.run_text([str(Path(sys.executable).with_name("reposeal")), "db", "install-links",
                    str(bindir)])  # fmt: skip
    progs = {
        "real": {"repo-add": "repo-add", "repo-remove": "repo-remove"},
        "ours": {name: str(bindir / name) for name in ("repo-add", "repo-remove")},
    }
    results = {}
    for who, prog in progs.items():
        repo = tmp_path / who / "x86_64"
        repo.mkdir(parents=True)
        steps = _as_scripts_call_it(style, prog, repo, built_packages, gpg_key)
        db = repo / "custom.db.tar.zst"
        verified = subprocess.run(["gpg", "--verify", str(db) + ".sig", str(db)],
                                  env=os.environ | {"GNUPGHOME": str(gpg_key.home)},
                                  capture_output=True, check=False)  # fmt: skip
        links = {n: os.readlink(repo / n) for n in ("custom.db", "custom.db.sig", "custom.files",
                 "custom.files.sig") if (repo / n).is_symlink()}  # fmt: skip
        results[who] = (steps, _listing(db), verified.returncode, links)
    assert results["ours"][0] == results["real"][0], results
    assert results["ours"][1] == results["real"][1], results
    assert results["ours"][2] == 0 == results["real"][2]
    assert results["ours"][3] == results["real"][3] and len(results["ours"][3]) == 4, results
