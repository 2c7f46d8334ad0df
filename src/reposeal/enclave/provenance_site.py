"""The provenance pages as a site: made from a log copy (audited first), or from a mirror's
log fetched into scratch and checked against the repository key, and put in place in one
switch so a reader never sees half a site. The pages themselves: ``provenance.render``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from reposeal.enclave.audit import AuditReport, audit
from reposeal.errors import ReposealError


def pages_of(log_dir: Path) -> tuple[dict[str, bytes], AuditReport]:
    """Every page for the log in ``log_dir`` (an enclave home or an auditor's copy), and
    the audit they show."""
    from reposeal.enclave.pkgbuilds import kept_texts
    from reposeal.enclave.provenance import names_of, render
    from reposeal.policy.document import parse_policy

    report = audit(log_dir)
    names: dict[str, str] = {}
    for doc in sorted((log_dir / "policies").glob("*.json")):
        try:
            policy = parse_policy(doc.read_bytes())
        except ReposealError:
            continue
        for _, certs in policy.armored:
            names |= names_of(list(certs))
    entries = [p["entry"] for p in report.provenance]
    pages = render(report.provenance, report.adoptions, names, report.violations,
                   proofs(log_dir, entries), kept_texts(log_dir))  # fmt: skip
    return pages, report


def pages_from_mirror(
    log_url: str, keyring: bytes, scratch: Path
) -> tuple[dict[str, bytes], AuditReport]:
    """The pages for the log at ``log_url``, checked against ``keyring`` (the repository
    key), from a copy made under ``scratch`` and removed afterwards."""
    from reposeal.enclave.restore import scratch_copy
    from reposeal.openpgp.verify import Keyring

    with scratch_copy(log_url, Keyring.from_bytes(keyring), scratch) as copy:
        return pages_of(copy)


def write_site(pages: dict[str, bytes], output: Path) -> None:
    """Write every page into a new folder beside ``output``, then put it in ``output``'s
    place (the old site goes only once the new one is whole)."""
    from reposeal.fsio import write_all

    output.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
    try:
        write_all({fresh / name: data for name, data in pages.items()})
        os.chmod(fresh, 0o755)  # noqa: S103  (public pages, served to everyone)
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
            os.replace(fresh, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(fresh, output)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def proofs(log_dir: Path, entries: list[int]) -> dict[int, bytes]:
    """Each entry's C2SP tlog-proof in the log's newest checkpoint."""
    from reposeal.translog.proof import make_proof
    from reposeal.translog.store import TransparencyLog

    with TransparencyLog(log_dir / "log.sqlite") as log:
        latest = log.latest_checkpoint()
        if latest is None:
            return {}
        size, _, note = latest
        return {i: make_proof(log.entry(i), i, log.inclusion_proof(i, size), note)
                for i in entries if i < size}  # fmt: skip
