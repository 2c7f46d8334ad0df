"""The worker's transition in memory (no sandbox, real libarchive and libalpm): the enclave
writes the databases itself, reuses its own chunks, and reads its output back with pacman's
libraries. A table of hostile packages shows each attack refused, never signed."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from pathlib import Path

import pytest

from reposeal.alpm import chunked, compression
from reposeal.alpm.syncdb import archive_chunks, decompress_blob, entries_from_tars
from reposeal.alpm.synthetic import package_bytes, pkginfo_text
from reposeal.enclave.transition import WorkerOutput
from reposeal.enclave.worker import decide_job
from reposeal.enclave.workspec import WorkSpec
from reposeal.enclave.zygote import MemoryJob
from reposeal.evidence.statements import Approval, Build, Removal, to_bytes
from reposeal.policy.document import Policy
from reposeal.policy.entries import PackagesEntry, apply
from reposeal.policy.state import PackageRecord, SigningState
from tests.policy.world import World

PKGBUILD = hashlib.sha256(b"PKGBUILD").hexdigest()
SIG = "c2lnbmF0dXJl"  # what the enclave logged as each file's signature (base64)


def name_of(data: bytes) -> str:
    """The file name a job gives a package: NAME-VERSION-ARCH.pkg.tar.zst, from .PKGINFO."""
    text = decompress_pkginfo(data)
    fields = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    return f"{fields['pkgname']}-{fields['pkgver']}-{fields['arch']}.pkg.tar.zst"


def decompress_pkginfo(data: bytes) -> str:
    tar = compression.decompress(data, compression.detect(data[:263]), 1 << 30)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        member = t.extractfile(".PKGINFO")
        assert member is not None
        return member.read().decode()


class Enclave:
    """An in-memory enclave: the signing state, its last databases, the worker's code."""

    def __init__(self, world: World, policy: Policy) -> None:
        self.world, self.policy = world, policy
        self.state = SigningState()
        self.last: dict[str, bytes] | None = None

    def evidence(self, files: dict[tuple[str, str], bytes], data: bytes, name: str) -> None:
        sha = hashlib.sha256(data).hexdigest()
        base = name.rsplit("-", 3)[0]
        for fname, stmt, people in (
            ("a", Approval("core", base, "c" * 40, PKGBUILD), self.world.maintainers),
            ("b", Build(base, "c" * 40, name, sha, "0" * 64), self.world.builders),
        ):
            raw = to_bytes(stmt)
            files[("evidence", f"{name}-{fname}.json")] = raw
            files[("evidence", f"{name}-{fname}.json.sig")] = b"".join(
                p.sign(raw) for p in people[:2]
            )

    def propose(self, adds: list[bytes], removes: list[str] = ()) -> WorkerOutput:  # type: ignore[assignment]
        files: dict[tuple[str, str], bytes] = {}
        names = []
        for data in adds:
            name = name_of(data)
            names.append(name)
            files[("packages", name)] = data
            self.evidence(files, data, name)
            sha = hashlib.sha256(data).hexdigest()
            self.state = apply(self.state, PackagesEntry("core", {}, {sha: SIG}))
        for removed in removes:  # a maintainer quorum approves each removal, version named
            raw = to_bytes(Removal("core", ((removed, "1-1"),)))
            files[("evidence", f"remove-{removed}.json")] = raw
            files[("evidence", f"remove-{removed}.json.sig")] = b"".join(
                p.sign(raw) for p in self.world.maintainers[:2]
            )
        spec: dict[str, object] = {
            "kind": "transition", "repo": "core", "arch": "x86_64", "add": names,
            "moves": [], "remove": list(removes), "compression": ".gz", "parent": None,
        }  # fmt: skip
        if self.last is not None:
            spec |= {k: hashlib.sha256(self.last[b]).hexdigest()
                     for k, b in (("parent", "db"), ("parent_files", "files"),
                                  ("parent_index", "index"))}  # fmt: skip
            files |= {("job", f"parent.{k}"): v for k, v in self.last.items()}
        out = decide_job(MemoryJob(WorkSpec.from_json(spec), self.policy, files, self.state))
        if out.decision.accepted:
            self.accept(out)
        return out

    def accept(self, out: WorkerOutput) -> None:
        """What the enclave does with an accepted answer (the log entry, applied)."""
        from reposeal.policy.entries import TransitionEntry

        records = {
            r["name"]: PackageRecord(r["name"], r["version"], r["arch"], r["sha256"],
                                     r["filename"], r["pkgbase"], r["pkgbuild_sha256"])
            for r in json.loads(out.blobs["records"])
        }  # fmt: skip
        d = out.decision
        entry = TransitionEntry("core", "x86_64", d.parent, str(d.db_sha256), records,
                                removes=d.removes, used_removals=d.used_removals)  # fmt: skip
        self.state = apply(self.state, entry)
        self.last = {k: out.blobs[k] for k in ("db", "files", "index")}


def pkg(name: str, version: str = "1-1", **kw: object) -> bytes:
    return package_bytes(name, version, "x86_64", pkgbuild_sha256=PKGBUILD, **kw)  # type: ignore[arg-type]


def test_the_worker_writes_what_reposeal_db_writes(world: World, policy: Policy) -> None:
    enclave = Enclave(world, policy)
    out = enclave.propose([pkg("foo"), pkg("bar", depends=["foo>=1"])])
    assert out.decision.accepted, out.decision
    tar = decompress_blob(out.blobs["db"], "db")
    files_tar = decompress_blob(out.blobs["files"], "files")
    entries = entries_from_tars(tar, files_tar, "db", "files")
    assert sorted(entries) == ["bar", "foo"]
    assert b"%PGPSIG%\n" + SIG.encode() in entries["foo"].desc
    assert b"%DEPENDS%\nfoo>=1\n" in entries["bar"].desc
    assert tar == b"".join(archive_chunks(entries.values(), False))  # one canonical form


def test_a_change_rewrites_only_the_chunks_it_touches(world: World, policy: Policy) -> None:
    enclave = Enclave(world, policy)
    first = [pkg(f"p{i:04d}") for i in range(700)]
    assert enclave.propose(first).decision.accepted
    before = json.loads(enclave.last["index"])["db"]["chunks"]  # type: ignore[index]
    out = enclave.propose([pkg("p0350", "2-1")], removes=["p0001"])
    assert out.decision.accepted, out.decision
    after = json.loads(out.blobs["index"])["db"]["chunks"]
    assert len(before) == len(after) >= 3
    # p0001 and p0350 lie in two chunks; every other chunk is the parent's, byte for byte
    assert len(set(before) & set(after)) == len(before) - 2
    entries = entries_from_tars(decompress_blob(out.blobs["db"], "db"), None, "db", None)
    assert entries["p0350"].version == "2-1" and "p0001" not in entries
    assert out.decision.replaced == ("p0001-1-1-x86_64.pkg.tar.zst",
                                     "p0350-1-1-x86_64.pkg.tar.zst")  # fmt: skip


def _gzip_then_zlib(name: str) -> bytes:
    """A gzip member holding the package, then a zlib-format stream with more members."""
    import gzip

    body = compression.decompress(pkg(name), compression.ZSTD, 1 << 30)
    end = body.rindex(b"\0" * 1024)
    extra = tarfile.TarInfo("usr/bin/evil")
    extra.size = 4
    hidden = extra.tobuf(format=tarfile.GNU_FORMAT) + b"evil".ljust(512, b"\0")
    return gzip.compress(body[:end]) + zlib.compress(hidden + b"\0" * 1024)


def _padded_members(name: str) -> bytes:
    """Two gzip members with NUL padding between them."""
    import gzip

    body = compression.decompress(pkg(name), compression.ZSTD, 1 << 30)
    half = len(body) // 1024 * 512
    return gzip.compress(body[:half]) + b"\0" * 512 + gzip.compress(body[half:])


def _nul_in_field(name: str) -> bytes:
    info = pkginfo_text(name, "1-1", "x86_64", extra=[("replaces", "openssh\0x")])
    return pkg(name, pkginfo=info)


def _huge_builddate(name: str) -> bytes:
    """A number past what libalpm's 64-bit fields hold: it would read another date."""
    info = pkginfo_text(name, "1-1", "x86_64", builddate=2**64 + 5)
    return pkg(name, pkginfo=info)


def _tar_package(name: str, evil_member: bytes) -> bytes:
    """A valid package's tar with one extra hand-made member, gzip-compressed."""
    body = compression.decompress(pkg(name), compression.ZSTD, 1 << 30)
    end = body.rindex(b"\0" * 1024)
    return compression.compress([body[:end], evil_member, b"\0" * 1024], compression.GZIP)


def _gnu_name_then_pax(name: str) -> bytes:
    """Class 4: a GNU long name, then a pax header naming another path (libarchive: the
    later one wins)."""
    from tests.alpm.test_libarchive_differential import GNU, POSIX, _header, _pad, _pax

    long = b"usr/share/" + b"n" * 120
    records = _pax({"path": b"etc/evil"})
    member = (
        _header(b"././@LongLink", len(long) + 1, b"L", magic=GNU) + _pad(long + b"\0")
        + _header(b"PaxHeader", len(records), b"x", magic=POSIX) + _pad(records)
        + _header(b"usr/share/x", 4, b"0", magic=POSIX) + _pad(b"evil")
    )  # fmt: skip
    return _tar_package(name, member)


def _prefix_under_gnu_magic(name: str) -> bytes:
    """Class 4: a ustar prefix field in a header with GNU's magic (which readers join?)."""
    from tests.alpm.test_libarchive_differential import GNU, _header, _pad

    return _tar_package(name, _header(b"evil", 4, b"0", magic=GNU, prefix=b"etc") + _pad(b"evil"))


def _odd_octal(name: str) -> bytes:
    """Class 4: a size field Python's int(x, 8) takes and libarchive reads otherwise."""
    from tests.alpm.test_libarchive_differential import POSIX, _header, _pad

    header = _header(b"usr/share/odd", 4, b"0", magic=POSIX, size_field=b"0o0000004\0\0\0")
    return _tar_package(name, header + _pad(b"evil"))


HOSTILE = {
    "GNU long name, then a pax path": _gnu_name_then_pax,
    "ustar prefix under GNU magic": _prefix_under_gnu_magic,
    "a size field with 0o": _odd_octal,
    "zlib member after gzip": _gzip_then_zlib,
    "NUL padding between members": _padded_members,
    "NUL byte in a field": _nul_in_field,
    "a number libalpm reads otherwise": _huge_builddate,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_packages_are_refused_never_signed(world: World, policy: Policy, case: str) -> None:
    enclave = Enclave(world, policy)
    data = HOSTILE[case]("evil")
    files: dict[tuple[str, str], bytes] = {}
    name = "evil-1-1-x86_64.pkg.tar" + (".zst" if data[:4] == b"\x28\xb5\x2f\xfd" else ".gz")
    files[("packages", name)] = data
    enclave.evidence(files, data, name)
    sha = hashlib.sha256(data).hexdigest()
    enclave.state = apply(enclave.state, PackagesEntry("core", {}, {sha: SIG}))
    spec = {"kind": "transition", "repo": "core", "arch": "x86_64", "add": [name],
            "moves": [], "remove": [], "compression": ".gz", "parent": None}  # fmt: skip
    out = decide_job(MemoryJob(WorkSpec.from_json(spec), policy, files, enclave.state))
    assert out.decision.decision == "refuse", out.decision
    assert out.decision.reasons and "db" not in out.blobs, out.decision


def test_a_worker_cannot_be_handed_a_database(world: World, policy: Policy) -> None:
    """The job's databases are the enclave's own, checked against its log's hashes."""
    enclave = Enclave(world, policy)
    assert enclave.propose([pkg("foo")]).decision.accepted
    assert enclave.last is not None
    enclave.last["db"] = enclave.last["db"] + b"\0"  # someone else's bytes
    out = enclave.propose([pkg("bar")])  # the job's hashes are of the altered bytes...
    assert out.decision.decision == "refuse"  # ...which the index does not describe


def test_chunks_of_the_index_must_be_the_databases(tmp_path: Path) -> None:
    entries = []
    from reposeal.alpm.syncdb import Entry

    for i in range(5):
        entries.append(Entry(f"n{i}", "1-1", b"%NAME%\nn\n\n", b"%FILES%\n"))
    chunks = chunked.make_chunks(entries, compression.GZIP, size=2)
    db = chunked.assemble(chunks, "db", compression.GZIP)
    files = chunked.assemble(chunks, "files", compression.GZIP)
    doc = chunked.index_document(chunks, compression.GZIP, {"db": db, "files": files})
    pieces = chunked.pieces(doc, {"db": db, "files": files})
    assert chunked.rebuild(doc, "db", pieces, compression.GZIP) == db
    assert chunked.pieces(doc, {"db": db + b"x", "files": files}) == {}


def _archive(members: list[tuple[str, bytes | None]]) -> bytes:
    from reposeal.alpm.tarformat import END_OF_ARCHIVE, tar_member

    return compression.compress(
        [*(tar_member(n, d, 0) for n, d in members), END_OF_ARCHIVE], compression.GZIP
    )


GOOD = b"%FILENAME%\nfoo-1-1-any.pkg.tar.zst\n\n%NAME%\nfoo\n\n%VERSION%\n1-1\n\n"
HIDDEN = GOOD + b"%PACKAGER%\nme\n%FILENAME%\nevil-1-1-any.pkg.tar.zst\n\n"  # class 3
READ_BACK = {
    "a second value line hides a field": (
        [("foo-1-1/", None), ("foo-1-1/desc", HIDDEN)],
        HIDDEN,
        "pacman would read filename",
    ),
    "a depends member beside desc": (
        [("foo-1-1/", None), ("foo-1-1/desc", GOOD), ("foo-1-1/depends", b"%DEPENDS%\nx\n\n")],
        GOOD,
        "more members than were written",
    ),
    "a member that reads as a package": (
        [(".PKGINFO", b"pkgname = foo\n"), ("foo-1-1/", None), ("foo-1-1/desc", GOOD)],
        GOOD,
        "more members than were written",
    ),
    "a NUL byte in a value": (
        [("foo-1-1/", None), ("foo-1-1/desc", GOOD.replace(b"\nfoo\n", b"\nfoo\0x\n"))],
        GOOD.replace(b"\nfoo\n", b"\nfoo\0x\n"),
        "pacman would read name as 'foo'",
    ),
}


@pytest.mark.parametrize("case", sorted(READ_BACK))
def test_read_back_refuses_what_pacman_would_read_otherwise(case: str) -> None:
    """Classes 3 and 6 against the read-back itself: were the writer ever to produce such
    bytes, libarchive and libalpm would see it, and nothing would be signed."""
    from reposeal.enclave.readback import Meant, read_back

    members, desc, expect = READ_BACK[case]
    files = [*members, ("foo-1-1/files", b"%FILES%\n")]
    meant = [Meant("foo-1-1", desc, b"%FILES%\n")]
    problems = read_back(_archive(members), _archive(files), meant)
    assert any(expect in p for p in problems), problems


def test_read_back_passes_what_it_meant() -> None:
    from reposeal.enclave.readback import Meant, read_back

    members = [("foo-1-1/", None), ("foo-1-1/desc", GOOD)]
    files = [*members, ("foo-1-1/files", b"%FILES%\nusr/\n")]
    assert (
        read_back(_archive(members), _archive(files), [Meant("foo-1-1", GOOD, b"%FILES%\nusr/\n")])
        == []
    )
