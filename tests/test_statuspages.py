"""The status pages are rendered from strings others wrote: all of it is escaped."""

from __future__ import annotations

from pathlib import Path

from reposeal.metrics import reason_kind
from reposeal.statuspages import render_repo, render_source

EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_hostile_names_and_reasons_are_escaped() -> None:
    doc = {
        "waiting": [{"repo": "core", "pkgbase": EVIL, "commit": EVIL, "missing": [EVIL]}],
        "parked": [
            {
                "repo": "core",
                "arch": "x86_64",
                "pkgbase": EVIL,
                "commit": "a" * 40,
                "alone": True,
                "reasons": [EVIL],
            }
        ],
        "cycles": [
            {
                "id": EVIL,
                "repo": "core",
                "arch": "x86_64",
                "step": "failed",
                "sources": [[EVIL, "b" * 40]],
                "reasons": [EVIL],
            }
        ],
        "log": {"size": 1, "entries": [(0, {"type": EVIL, "admitted": {EVIL: []}})]},
        "statements": {EVIL: 1},
    }
    page = render_repo(doc, 0).decode()
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    proposals = [{"pkgbase": EVIL, "commit": EVIL, "author": EVIL,
                  "approvals": {EVIL: {"signers": [EVIL], "needed_more": 1,
                                       "could_approve": [EVIL]}},
                  "withdrawn": {EVIL: [EVIL]},
                  "jobs": [{"id": EVIL, "state": EVIL, "built_by": [EVIL],
                            "differences": [EVIL]}]}]  # fmt: skip
    page = render_source(proposals, {EVIL.upper(): EVIL}, 0).decode()
    assert "<script>" not in page and "<img" not in page and "1 more needed" in page


def test_refusal_reasons_become_a_bounded_label() -> None:
    a = reason_kind("hello-1.2-1: 1.2-1 is older than 1.3-1 in the database")
    b = reason_kind("world-9.0-2: 9.0-2 is older than 10.1-1 in the database")
    assert a == b and len(reason_kind("x" * 500)) <= 80


def test_the_host_checks_show_on_the_status_pages(tmp_path: Path) -> None:
    """What `reposeal hostcheck --metrics-file` kept, read back and shown."""
    from reposeal.metrics import Metrics, read_hostchecks

    for tool, findings, failed in (("aide", 3, 0), ("debsums", 0, 0), ("rkhunter", 0, 1)):
        m = Metrics("hostcheck")
        m.gauges(lambda f=findings, x=failed, t=tool: {
            "reposeal_hostcheck_findings": {(("tool", t),): float(f)},
            "reposeal_hostcheck_failed": {(("tool", t),): float(x)}},
            {"reposeal_hostcheck_findings": "f", "reposeal_hostcheck_failed": "x"})  # fmt: skip
        m.write(tmp_path / f"hostcheck-{tool}.prom")
    (tmp_path / "hostcheck-evil.prom").write_bytes(b"\xff\xfe not metrics {")
    checks = read_hostchecks(tmp_path)
    assert [c["tool"] for c in checks] == ["aide", "debsums", "evil", "rkhunter"]
    page = render_repo({"hostchecks": checks}, 0).decode()
    assert "3 findings" in page and "clean" in page and "could not run" in page
    assert "does not read" in page
    assert "3 findings" in render_source([], {}, 0, checks).decode()
