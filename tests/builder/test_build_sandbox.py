"""The builder's sandbox, for real: a build sees the system read-only and its own folder,
nothing else of the machine (not the builder's key), and no network; the source tree it
gets cannot write outside its folder."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reposeal.builder.makepkg import BuildError
from reposeal.builder.run import _as_user, sandbox, unpack

pytestmark = pytest.mark.e2e


@pytest.fixture
def work() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="reposeal-sbx-"))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def inside(work: Path, script: str, network: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = _as_user([*sandbox(work, network=network, env={}), "sh", "-c", script], "reposeal-build")
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


def test_a_build_sees_its_folder_and_the_system_only(work: Path, tmp_path: Path) -> None:
    secret = tmp_path / "builder.key"
    secret.write_text("the builder's signing key")
    out = inside(work, f"cat {secret}; ls /root /work /home; echo made > /build/out; pwd")
    assert "signing key" not in out.stdout
    assert out.stdout.strip().endswith("/build"), out
    assert (work / "out").read_text() == "made\n"
    denied = inside(work, "touch /usr/evil || touch /etc/evil || echo refused")
    assert "refused" in denied.stdout and not Path("/usr/evil").exists()


def test_a_build_has_no_network(work: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected || echo cut off"
        out = inside(work, f"bash -c '{probe}'")
        assert "cut off" in out.stdout, out


def tar_of(*members: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for m in members:
            if m.isfile():
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
            else:
                t.addfile(m)
    return buf.getvalue()


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escape"),
        tarfile.TarInfo("/etc/escape"),
        tarfile.TarInfo("link"),  # made a symlink to / below
    ],
)
def test_a_hostile_source_tree_stays_in_its_folder(work: Path, member: tarfile.TarInfo) -> None:
    members = [member]
    if member.name == "link":
        member.type, member.linkname = tarfile.SYMTYPE, "/"
        members.append(tarfile.TarInfo("link/etc/escape"))
    with pytest.raises(BuildError, match="does not unpack"):
        unpack(tar_of(*members), work / "src")
    assert not Path("/etc/escape").exists() and not (work / "escape").exists()


@pytest.mark.parametrize(
    "bad",
    [{"pkgbase": "../../etc"}, {"commit": "HEAD"}, {"id": "a/b"}, {"source_date_epoch": "x"},
     {"source_date_epoch": True}, {"source_date_epoch": -1}, {"repo": None}, {"arch": "x y"},
     {"arch": 5}, {"arch": 0}, {"extra": 1}],
)  # fmt: skip
def test_a_hostile_job_is_refused_before_any_field_is_used(bad: dict[str, object]) -> None:
    from reposeal.protocol.buildjobs import BuildJob, BuildJobError

    job = {"id": "hello-1", "repo": "core", "pkgbase": "hello", "commit": "a" * 40,
           "source_date_epoch": 1700000000}  # fmt: skip
    assert BuildJob.from_json(job) == BuildJob("hello-1", "core", "hello", "a" * 40, 1700000000)
    assert BuildJob.from_json(BuildJob.from_json(job).to_json()).arch == ""
    with pytest.raises(BuildJobError, match="malformed job"):
        BuildJob.from_json(job | bad)
    with pytest.raises(BuildJobError):
        BuildJob.from_json([job])
