"""`reposeal enclave selfcheck` (run by a timer): is this enclave still the one it should be?

- the installed reposeal files are exactly those of a manifest signed by the policy's admin
  threshold (a changed, added or removed file is named);
- the log verifies from its first entry (every leaf and node, the checkpoint's signature);
- the signing key is present, is the key the log's genesis names, and signs;
- the policy in force verifies under its admins and is the one the log says is in force.

Each check reports on its own; any failure makes the whole run fail, loudly.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reposeal
from reposeal import canonical
from reposeal.enclave.home import EnclaveHome
from reposeal.errors import ReposealError
from reposeal.evidence.quorum import valid_signers
from reposeal.openpgp.verify import Keyring, verify_detached

MANIFEST_VERSION = 1
SKIP = ("__pycache__",)


def installed_root() -> Path:
    """The folder of the reposeal package this process runs."""
    return Path(reposeal.__file__).resolve().parent


def file_hashes(root: Path) -> dict[str, str]:
    """Every file below ``root`` (bytecode caches aside): relative path -> sha256."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part in SKIP for part in path.relative_to(root).parts):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def make_manifest(root: Path) -> bytes:
    """The manifest of the files at ``root``, canonical JSON, for the admins to sign."""
    from reposeal.enclave.hardening import runtime_hashes

    doc = {
        "v": MANIFEST_VERSION,
        "type": "reposeal-manifest",
        "version": reposeal.__version__,
        "files": file_hashes(root),
        "runtime": runtime_hashes(),  # the Python and bubblewrap it runs from
    }
    return canonical.dumps(doc)


def compare(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """What differs between a manifest and the files found (pure)."""
    problems = [f"changed: {p}" for p in sorted(expected) if p in found and found[p] != expected[p]]
    problems += [f"missing: {p}" for p in sorted(set(expected) - set(found))]
    problems += [f"not in the manifest: {p}" for p in sorted(set(found) - set(expected))]
    return problems


@dataclass
class Report:
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def run(self, name: str, check: Callable[[], list[str]]) -> None:
        try:
            problems = check()
        except ReposealError as exc:
            problems = [str(exc)]
        except (OSError, ValueError, KeyError) as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        self.checks.append({"check": name, "ok": not problems, "problems": problems})


def selfcheck(
    home_path: Path, manifest: Path, root: Path | None = None, gnupghome: Path | None = None
) -> Report:
    home = EnclaveHome(home_path, gnupghome)
    report = Report()
    root = root or installed_root()

    def files() -> list[str]:
        raw = manifest.read_bytes()
        sigs = manifest.with_name(manifest.name + ".sig").read_bytes()
        policy = home.policy()
        signers = valid_signers(raw, sigs, policy.keyrings["admins"])
        if len(signers) < policy.admin_threshold:
            return [
                f"the manifest is signed by {len(signers)} admin keys of the policy, "
                f"needs {policy.admin_threshold}"
            ]
        doc = json.loads(raw)
        if doc.get("type") != "reposeal-manifest":
            return ["the manifest is not a reposeal manifest"]
        problems = compare(dict(doc["files"]), file_hashes(root))
        from reposeal.enclave.hardening import runtime_hashes

        found = runtime_hashes()
        for name, expected in dict(doc.get("runtime", {})).items():
            if found.get(name) != expected:
                problems.append(f"{name} is not the one the manifest names: {found.get(name)}")
        return problems

    def log() -> list[str]:
        home.load_state()  # verifies every leaf and node, and the checkpoint's signature
        return []

    def key() -> list[str]:
        signer = home.signer()  # the key the log names, allowed by the policy
        cert = signer.certificate()
        fpr = Keyring.from_bytes(cert).fingerprints()[0]
        if fpr != home.signer_fingerprint():
            return [f"the signing key is {fpr}; the log names {home.signer_fingerprint()}"]
        probe = b"reposeal selfcheck"
        verify_detached(probe, signer.sign_detached(io.BytesIO(probe)), Keyring.from_bytes(cert))
        return []

    def policy() -> list[str]:
        home.load_state()
        home.policy()  # the document the log names, by hash, verified under its admins
        return []

    def hardening() -> list[str]:
        from reposeal.enclave.hardening import key_file_problems, observe

        problems = []
        spec = str(home.config()["signer"])
        if spec.startswith("soft:"):
            problems += key_file_problems(Path(spec[5:]).stat().st_mode)
        seen = observe(home.path)
        for pid, lacks in seen.processes.items():
            problems += [f"enclave run (pid {pid}): {p}" for p in lacks]
            if seen.listening.get(pid):
                problems.append(f"enclave run (pid {pid}) listens on a socket")
        return problems

    report.run("installed files match the signed manifest", files)
    report.run("the sandbox it relies on is in force (no privileges, no listening socket, "
               "a private key file)", hardening)  # fmt: skip
    report.run("the transparency log verifies", log)
    report.run("the signing key is present, is the log's, the policy's, and signs", key)
    report.run("the policy in force verifies and is the logged one", policy)
    return report
