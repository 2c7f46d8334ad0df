"""The approved PKGBUILDs' texts on their way to the mirrors: who wrote each byte, and why a
text the untrusted side sends is shown only when it is the one the maintainers approved."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from reposeal.alpm.limits import MAX_PKGBUILD_TEXT
from reposeal.enclave.pkgbuilds import approved_texts, kept_texts
from reposeal.enclave.provenance import render
from reposeal.errors import InputError
from reposeal.evidence.statements import Approval, Removal, to_bytes
from reposeal.repo.intake import Intake, UploadRefusedError
from tests.policy.world import make_world

V1 = b"pkgname=hello\npkgver=1.0\npkgrel=1\n"
V2 = b"pkgname=hello\npkgver=1.1\npkgrel=1\nsource=(evil.patch)\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_enclave_keeps_only_texts_that_hash_to_an_added_packages_pkgbuild(
    tmp_path: Path,
) -> None:
    ev = tmp_path / "evidence"
    ev.mkdir()
    (ev / f"{sha(V1)}.PKGBUILD").write_bytes(V1)
    (ev / f"{sha(V2)}.PKGBUILD").write_bytes(V1)  # named as V2, holds V1: a lie
    (ev / f"{sha(b'x')}.PKGBUILD").write_bytes(b"x")  # a text no package added names
    big = b"#" * (MAX_PKGBUILD_TEXT + 1)
    (ev / f"{sha(big)}.PKGBUILD").write_bytes(big)
    os.mkfifo(ev / f"{'f' * 64}.PKGBUILD")  # never blocks the enclave
    wanted = [sha(V1), sha(V2), sha(big), "f" * 64, None]
    assert approved_texts(ev, wanted) == {sha(V1): V1}
    assert approved_texts(None, wanted) == {}


def test_a_home_copy_shows_only_texts_that_match_their_name(tmp_path: Path) -> None:
    folder = tmp_path / "pkgbuilds"
    folder.mkdir()
    (folder / sha(V1)).write_bytes(V1)
    (folder / sha(V2)).write_bytes(V1 + b"# changed on the mirror\n")
    (folder / "README").write_bytes(b"not a text")
    assert kept_texts(tmp_path) == {sha(V1): V1}
    assert kept_texts(tmp_path / "none") == {}


def _entry(index: int, version: str, text: bytes) -> dict[str, object]:
    return {
        "entry": index, "repo": "core", "arch": "x86_64", "adopted_by": [], "removed": [],
        "packages": [{
            "name": "hello", "version": version, "sha256": "0" * 64, "approved_by": [],
            "pkgbase": "hello", "pkgbuild_sha256": sha(text), "commits": ["a" * 40],
            "built_by": [], "moved_from": None,
        }],
    }  # fmt: skip


def test_provenance_shows_the_approved_change_against_the_previous_pkgbuild() -> None:
    evil = V2 + b'echo "<script>alert(1)</script>"\n'
    provenance = [_entry(1, "1.0-1", V1), _entry(2, "1.1-1", evil)]
    pages = render(provenance, [], {}, [], None, {sha(V1): V1, sha(evil): evil})  # type: ignore[arg-type]
    change = pages[f"pkgbuilds/{sha(evil)}.html"].decode()
    assert "<span class=del>-pkgver=1.0</span>" in change
    assert "<span class=add>+pkgver=1.1</span>" in change
    assert "+source=(evil.patch)" in change
    assert "<script>" not in change and "&lt;script&gt;" in change, "the text is escaped"
    assert pages[f"pkgbuilds/{sha(evil)}"] == evil, "the text itself, to hash"
    first = pages[f"pkgbuilds/{sha(V1)}.html"].decode()
    assert "no earlier PKGBUILD" in first and "+pkgver=1.0" in first
    index = pages["index.html"].decode()
    assert index.count("the approved change") == 2


def test_provenance_never_shows_a_text_that_is_not_the_approved_one() -> None:
    provenance = [_entry(1, "1.0-1", V1)]
    pages = render(provenance, [], {}, [], None, {sha(V1): V2})  # type: ignore[arg-type]
    assert not any(name.startswith("pkgbuilds/") for name in pages)
    assert "its text is not published" in pages["index.html"].decode()


def test_the_repo_machine_keeps_a_text_only_with_the_approval_that_names_it(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    world = make_world(tmp_path / "keys")
    policy = world.policy()
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    intake = Intake(tmp_path / "intake", blobs)
    approval = to_bytes(Approval("core", "hello", "a" * 40, sha(V1)))
    sigs = world.maintainers[0].sign(approval)
    for text, why in ((V2, "not the one the approval names"),
                      (b"#" * (MAX_PKGBUILD_TEXT + 1), "larger than")):  # fmt: skip
        with pytest.raises(UploadRefusedError, match=why):
            intake.add_statement(policy, approval, sigs, text)
        assert list(blobs.iterdir()) == [], "nothing kept from a refused push"
    removal = to_bytes(Removal("core", (("hello", "1.0-1"),)))
    with pytest.raises(UploadRefusedError, match="only an approval"):
        intake.add_statement(policy, removal, world.maintainers[0].sign(removal), V1)
    assert not intake.pkgbuild_text(sha(V1))
    intake.add_statement(policy, approval, sigs, V1)
    assert intake.pkgbuild_text(sha(V1)) and (blobs / sha(V1)).read_bytes() == V1
    with pytest.raises(InputError):  # the text never comes without a valid approval
        intake.add_statement(policy, approval, world.outsider.sign(approval), V1)  # type: ignore[union-attr]
