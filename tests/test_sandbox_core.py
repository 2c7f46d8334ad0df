"""What runs inside the enclave's sandbox is pinned: the worker imports the decision core,
the readers and writers it needs, and nothing that holds a key, writes the home, talks to
another machine or belongs to another role."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "reposeal.openpgp.soft",  # the private-key signer
    "reposeal.openpgp.signer",
    "reposeal.openpgp.gpg",
    "reposeal.openpgp.pkcs11",
    "reposeal.fsio",  # writes files
    "reposeal.translog.store",  # the log on disk
    "reposeal.enclave.home",  # and its parts: the home's keys, policies and files
    "reposeal.enclave.home_keys",
    "reposeal.enclave.home_policies",
    "reposeal.enclave.home_files",
    "reposeal.enclave.jobs",  # and what a job signs and answers
    "reposeal.enclave.signing",
    "reposeal.enclave.answers",
    "reposeal.protocol",  # the bridge and its clients
    "reposeal.repo",
    "reposeal.source",
    "reposeal.builder",
    "reposeal.client",
    "reposeal.cli",
    "reposeal.alpm.synthetic",  # a package builder for tests and benchmarks
)


def test_the_sandboxed_worker_imports_no_key_no_disk_no_network_code() -> None:
    code = (
        "import sys, reposeal.enclave.zygote, reposeal.enclave.worker\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('reposeal'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"the sandbox pulls in {bad}"
    assert "reposeal.policy.decide" in loaded and "reposeal.enclave.readback" in loaded


def test_the_warm_up_fixture_is_a_package_the_worker_reads() -> None:
    """The template warms up on a package kept beside it (not one built by test helpers)."""
    from reposeal.alpm.package import read_package
    from reposeal.enclave.zygote import WARM_UP

    info = read_package(WARM_UP).facts.info
    assert (info.name, info.version, info.arch) == ("warm-up", "1-1", "x86_64")
