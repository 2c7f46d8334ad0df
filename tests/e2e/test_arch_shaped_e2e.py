"""A repository shaped like Arch's official ones (gzip databases, %PGPSIG% embedded, capitals
in names, split packages, epochs, `any` packages, a .PKGINFO without builddate or size),
extended by repo-add and reposeal in turn, in both orders, with and without a files database
beside it; the real pacman reads every result (-Sy, -Si, -Fy, -Fl), and every entry is
byte-identical to what repo-add writes for the same packages from scratch."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reposeal.alpm.synthetic import package_bytes, pkginfo_text
from tests import tools
from tests.conftest import GpgKey, Pacman
from tests.e2e.test_pacman_e2e import reposeal, snapshot

pytestmark = pytest.mark.e2e


def _pkginfo(name: str, version: str, arch: str, base: str, **kw: object) -> bytes:
    info = pkginfo_text(name, version, arch, **kw)  # type: ignore[arg-type]
    return info.replace(f"pkgbase = {name}".encode(), f"pkgbase = {base}".encode())


def arch_packages(folder: Path) -> list[list[Path]]:
    """Four batches of packages, as a distribution's repository grows."""
    specs = [
        [("hunspell-en_AU", "2019.10.06-1", "any", "hunspell-en", {}),
         ("hunspell-en_US", "2019.10.06-1", "any", "hunspell-en", {}),
         ("packageA1", "1:2.0-1", "x86_64", "packageA1", {})],
        [("python-PyYAML", "6.0-1", "x86_64", "python-PyYAML", {"depends": ["python>=3.11"]}),
         ("nodate", "1.0-1", "x86_64", "nodate", {"nodate": True})],
        [("hunspell-en_AU", "2020.12.07-1", "any", "hunspell-en", {}),
         ("hunspell-en_US", "2020.12.07-1", "any", "hunspell-en", {}),
         ("lib32-Foo", "3.1-2", "x86_64", "lib32-Foo", {})],
        [("packageA1", "2:0.1-1", "x86_64", "packageA1", {}),
         ("zz-any", "1-1", "any", "zz-any", {})],
    ]  # fmt: skip
    batches = []
    for batch in specs:
        paths = []
        for name, version, arch, base, kw in batch:
            nodate = bool(kw.pop("nodate", False))
            info = _pkginfo(name, version, arch, base, **kw)
            if nodate:  # repo-add writes neither %BUILDDATE% nor %ISIZE% for these
                info = b"\n".join(
                    line for line in info.split(b"\n")
                    if not line.startswith((b"builddate", b"size"))
                )  # fmt: skip
            path = folder / f"{name}-{version}-{arch}.pkg.tar.zst"
            path.write_bytes(package_bytes(name, version, arch, pkginfo=info))
            paths.append(path)
        batches.append(paths)
    return batches


def repo_add(key: GpgKey, db: Path, *pkgs: Path) -> str:
    env = {**os.environ, "GNUPGHOME": str(key.home)}
    args = ["repo-add", "-q", "--sign", "--key", key.fingerprint, str(db), *map(str, pkgs)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stderr


def ours(key: GpgKey, db: Path, *pkgs: Path) -> str:
    return reposeal("db", "add", "--include-sigs", "--sign", "--key", key.fingerprint,
                    "--gnupghome", str(key.home), str(db), *map(str, pkgs)).stderr  # fmt: skip


def listing(db_dir: Path, name: str, which: str, out: Path) -> dict[str, bytes | str]:
    out.mkdir()
    tools.run(["bsdtar", "-xf", str(db_dir / f"{name}.{which}.tar.gz"), "-C", str(out)])
    return snapshot(out)


@pytest.mark.parametrize("files_db", [True, False], ids=["files-db", "no-files-db"])
@pytest.mark.parametrize("first", ["repo-add", "reposeal"])
def test_repo_add_and_reposeal_extend_each_other(
    tmp_path: Path, pacman: Pacman, gpg_key: GpgKey, first: str, files_db: bool
) -> None:
    repo = pacman.repo_dir
    batches = arch_packages(repo)
    for pkg in (p for b in batches for p in b):
        tools.gpg_sign_file(gpg_key.home, gpg_key.fingerprint, pkg)  # packager signatures
    db = repo / "demo.db.tar.gz"
    tools_in_turn = [repo_add, ours] if first == "repo-add" else [ours, repo_add]
    for i, batch in enumerate(batches):
        said = tools_in_turn[i % 2](gpg_key, db, *batch)
        if not files_db and i == 1 and first == "repo-add":
            assert "3 filled from the package files beside it" in str(said), said
        if i == 0 and not files_db:  # as databases repo-add made long ago: no files database
            for f in repo.glob("demo.files*"):
                f.unlink()
    # pacman reads the result
    pacman.run("-Sy")
    listed = pacman.run("-Sl", "demo").stdout
    for expected in ("hunspell-en_AU 2020.12.07-1", "packageA1 2:0.1-1", "python-PyYAML 6.0-1",
                     "nodate 1.0-1", "lib32-Foo 3.1-2", "zz-any 1-1"):  # fmt: skip
        assert f"demo {expected}" in listed, listed
    assert "Depends On      : python>=3.11" in pacman.run("-Si", "python-PyYAML").stdout
    pacman.run("-Fy")
    assert "usr/share/lib32-Foo/README" in pacman.run("-Fl", "lib32-Foo").stdout
    # every entry is what repo-add writes for the same packages from scratch
    reference = tmp_path / "reference"
    reference.mkdir()
    latest = {}
    for pkg in (p for b in batches for p in b):
        latest[pkg.name.rsplit("-", 3)[0]] = pkg
    for pkg in latest.values():
        shutil.copy2(pkg, reference / pkg.name)
        shutil.copy2(pkg.with_name(pkg.name + ".sig"), reference / (pkg.name + ".sig"))
    repo_add(gpg_key, reference / "demo.db.tar.gz", *(reference / p.name for p in latest.values()))
    assert listing(repo, "demo", "db", tmp_path / "ours-db") == listing(
        reference, "demo", "db", tmp_path / "ref-db"
    )
    # (where repo-add began a files database holding only what it added, reposeal filled
    # the missing entries from the package files beside it)
    assert listing(repo, "demo", "files", tmp_path / "ours-files") == listing(
        reference, "demo", "files", tmp_path / "ref-files"
    )
