"""The ansible deployment, for real: the playbook passes `ansible-playbook --syntax-check`
and `ansible-lint`, applies to a scratch root on this machine (users and services left
alone), and every systemd unit it renders passes `systemd-analyze verify` with no warning
and carries the hardening the design asks for (the enclave: the repo machine only, no
listening socket)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ANSIBLE = Path(__file__).resolve().parents[2] / "deploy" / "ansible"
INVENTORY = """\
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
  children:
    source: {hosts: {localhost: }}
    builders: {hosts: {localhost: }}
    repo: {hosts: {localhost: }}
    enclave: {hosts: {localhost: }}
"""


def run(*cmd: str, cwd: Path = ANSIBLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)


@pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="make test installs ansible")
def test_the_playbook_lints_and_renders_hardened_units(tmp_path: Path) -> None:
    syntax = run("ansible-playbook", "-i", "inventory.example.yml", "--syntax-check", "site.yml")
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    lint = run("ansible-lint", "site.yml")
    assert lint.returncode == 0, lint.stdout + lint.stderr

    (tmp_path / "inventory.yml").write_text(INVENTORY)
    root = tmp_path / "root"
    root.mkdir()
    bin_ = str(Path(sys.executable).with_name("reposeal"))
    applied = run(
        "ansible-playbook", "-i", str(tmp_path / "inventory.yml"), "site.yml",
        "-e", f"reposeal_root={root}", "-e", f"reposeal_bin={bin_}",
        "-e", "reposeal_repo_ip=192.0.2.20",
    )  # fmt: skip
    assert applied.returncode == 0, applied.stdout[-3000:]
    units = root / "etc" / "systemd" / "system"
    names = sorted(p.name for p in units.iterdir())
    assert names == [
        "reposeal-builder.service", "reposeal-enclave.service", "reposeal-repo.service",
        "reposeal-selfcheck.service", "reposeal-selfcheck.timer", "reposeal-source.service",
    ]  # fmt: skip
    verified = run("systemd-analyze", "verify", *names, cwd=units)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
    for name in names:
        if name.endswith(".service"):
            text = (units / name).read_text()
            for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
                assert line in text, (name, line)
    enclave = (units / "reposeal-enclave.service").read_text()
    assert "IPAddressDeny=any\nIPAddressAllow=192.0.2.20\nSocketBindDeny=any" in enclave
    assert "OnCalendar=hourly" in (units / "reposeal-selfcheck.timer").read_text()
    assert (root / "var/lib/reposeal").is_dir() and (root / "etc/reposeal").is_dir()
