"""Public provenance pages from an audited log: for every signed database, what it added
and on whose word (the maintainers who approved the PKGBUILD, the builders who attested the
file), what it removed, and which repositories were adopted and by which admins. Static
HTML anyone can serve beside the mirror; pure (the caller writes the files)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

STYLE = "body{font-family:sans-serif;margin:2em}td,th{padding:.2em .6em;text-align:left}"


def _who(fprs: list[str], names: Mapping[str, str]) -> str:
    if not fprs:
        return "<em>nobody</em>"
    return ", ".join(
        f'<span title="{html.escape(f)}">{html.escape(names.get(f.upper(), f[-16:]))}</span>'
        for f in fprs
    )


def render(
    provenance: list[dict[str, Any]],
    adoptions: list[dict[str, Any]],
    names: Mapping[str, str],
    violations: list[str],
) -> dict[str, bytes]:
    """``index.html``: every signed database, newest first, with the evidence behind each
    package; ``names``: fingerprint -> the user ID to show."""
    rows = []
    for p in reversed(provenance):
        where = html.escape(f"{p['repo']}/{p['arch']}")
        if p["adopted_by"]:
            rows.append(
                f"<tr><td>{p['entry']}</td><td>{where}</td><td colspan=3><strong>adopted"
                f"</strong> {len(p['packages'])} packages, signed by "
                f"{_who(p['adopted_by'], names)}</td></tr>"
            )
            continue
        for pkg in p["packages"]:
            moved = f" (moved from {html.escape(pkg['moved_from'])})" if pkg["moved_from"] else ""
            rows.append(
                f"<tr><td>{p['entry']}</td><td>{where}</td>"
                f"<td>{html.escape(pkg['name'])} {html.escape(pkg['version'])}{moved}</td>"
                f"<td>approved by {_who(pkg['approved_by'], names)}</td>"
                f"<td>built by {_who(pkg['built_by'], names)}</td></tr>"
            )
        for name in p["removed"]:
            rows.append(f"<tr><td>{p['entry']}</td><td>{where}</td>"
                        f"<td colspan=3>removed {html.escape(name)}</td></tr>")  # fmt: skip
    adopted = "".join(
        f"<li>{html.escape(a['repo'])}/{html.escape(a['arch'])} (log entry {a['entry']}): "
        f"{len(a['packages'])} packages, signed by {_who(a['admins'], names)}</li>"
        for a in adoptions
    )
    state = (
        "<p>The log audits clean: every signature was one the policy allowed.</p>"
        if not violations
        else "<p><strong>The audit found violations:</strong></p><ul>"
        + "".join(f"<li>{html.escape(v)}</li>" for v in violations)
        + "</ul>"
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>reposeal provenance</title>"
        f"<style>{STYLE}</style><h1>Provenance</h1>{state}"
        + (f"<h2>Adopted repositories</h2><ul>{adopted}</ul>" if adopted else "")
        + "<h2>Signed databases</h2><table><tr><th>log entry</th><th>repository</th>"
        "<th>package</th><th>approvals</th><th>builds</th></tr>" + "".join(rows) + "</table>"
    )
    return {"index.html": page.encode()}


def names_of(armored_certs: list[str]) -> dict[str, str]:
    """Fingerprint -> first user ID, for the policy's keys."""
    import pysequoia

    out: dict[str, str] = {}
    for armored in armored_certs:
        try:
            cert = pysequoia.Cert.from_bytes(armored.encode())
        except (RuntimeError, ValueError):
            continue
        uids = [str(u) for u in cert.user_ids]
        out[cert.fingerprint.upper()] = uids[0] if uids else cert.fingerprint[-16:]
    return out
