"""policy and statement commands end to end, with soft keys made by `reposeal key`."""

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


def keys(tmp: Path, role: str, n: int) -> tuple[list[str], Path]:
    specs, certs = [], []
    for i in range(n):
        spec = f"soft:{tmp / f'{role}{i}.key'}"
        assert cli("key", "generate", "--signer", spec, "--uid", f"{role}{i} <x@y>").returncode == 0
        certs.append(cli("key", "export", "--signer", spec).stdout)
        specs.append(spec)
    ring = tmp / f"{role}.asc"
    ring.write_text("".join(certs))
    return specs, ring


def test_policy_and_statements(tmp_path: Path) -> None:
    admins, admin_ring = keys(tmp_path, "admin", 3)
    maints, maint_ring = keys(tmp_path, "maint", 2)
    builders, builder_ring = keys(tmp_path, "builder", 2)
    pol = tmp_path / "policy.json"
    out = cli(
        "policy",
        "init",
        "-o",
        str(pol),
        "--admins",
        str(admin_ring),
        "--maintainers",
        str(maint_ring),
        "--builders",
        str(builder_ring),
        "--admin-threshold",
        "2",
        "--approvals",
        "2",
        "--builds",
        "2",
        "--repo",
        "core:x86_64",
    )
    assert out.returncode == 0, out.stderr
    assert cli("policy", "verify", str(pol)).returncode == 5  # nobody signed yet
    cli("policy", "sign", "--signer", admins[0], str(pol))
    assert cli("policy", "verify", str(pol)).returncode == 5
    cli("policy", "sign", "--signer", admins[1], str(pol))
    ok = cli("policy", "verify", str(pol))
    assert ok.returncode == 0 and "policy v1 is valid" in ok.stdout

    pkgbuild = tmp_path / "PKGBUILD"
    pkgbuild.write_text("pkgname=foo\n")
    appr = tmp_path / "approval.json"
    out = cli(
        "statement",
        "approve",
        "-o",
        str(appr),
        "--signer",
        maints[0],
        "--repo",
        "core",
        "--pkgbase",
        "foo",
        "--commit",
        "c" * 40,
        "--pkgbuild",
        str(pkgbuild),
    )
    assert out.returncode == 0, out.stderr
    cli("policy", "sign", "--signer", maints[1], str(appr))  # a second maintainer co-signs
    v = json.loads(cli("statement", "verify", "--json", "--policy", str(pol), str(appr)).stdout)
    assert v["role"] == "maintainers" and len(v["signers"]) == 2 and v["meets_quorum"]

    pkg = write_package(tmp_path, "foo", "1-1")
    build = tmp_path / "build.json"
    assert (
        cli(
            "statement",
            "build",
            "-o",
            str(build),
            "--signer",
            builders[0],
            "--package",
            str(pkg),
            "--pkgbase",
            "foo",
            "--commit",
            "c" * 40,
        ).returncode
        == 0
    )
    v = json.loads(cli("statement", "verify", "--json", "--policy", str(pol), str(build)).stdout)
    assert v["role"] == "builders" and not v["meets_quorum"]
    # a maintainer's signature does not count for a build
    cli("policy", "sign", "--signer", maints[0], str(build))
    v = json.loads(cli("statement", "verify", "--json", "--policy", str(pol), str(build)).stdout)
    assert len(v["signers"]) == 1

    removal = tmp_path / "removal.json"
    assert (
        cli(
            "statement",
            "remove",
            "-o",
            str(removal),
            "--signer",
            maints[0],
            "--repo",
            "core",
            "foo=1.0-1",
        ).returncode
        == 0
    )
    unversioned = cli("statement", "remove", "-o", str(tmp_path / "r2.json"), "--signer",
                      maints[0], "--repo", "core", "foo")  # fmt: skip
    assert unversioned.returncode == 2 and "NAME=VERSION" in unversioned.stderr
    override = tmp_path / "override.json"
    assert (
        cli(
            "statement",
            "override",
            "-o",
            str(override),
            "--signer",
            admins[2],
            "--repo",
            "core",
            "--pkgname",
            "foo",
            "--action",
            "downgrade",
            "--from",
            "2-1",
            "--to",
            "1-1",
            "--package",
            str(pkg),
        ).returncode
        == 0
    )
    v = json.loads(cli("statement", "verify", "--json", "--policy", str(pol), str(override)).stdout)
    assert v["role"] == "admins" and v["predicate"]["action"] == "downgrade"
    # tampering is caught
    appr.write_bytes(appr.read_bytes().replace(b'"core"', b'"extra"'))
    assert cli("statement", "verify", "--policy", str(pol), str(appr)).returncode != 0
