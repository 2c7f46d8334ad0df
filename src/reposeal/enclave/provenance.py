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


def _anchor(name: str, version: str) -> str:
    return html.escape("p-" + "".join(c if c.isalnum() else "-" for c in f"{name}-{version}"))


def _entry(index: int, proofs: Mapping[int, bytes]) -> str:
    """The log entry, linked to its inclusion proof when there is one."""
    if index in proofs:
        return f'<a href="proofs/{index}.tlog-proof" title="inclusion proof">{index}</a>'
    return str(index)


def _change(pkg: Mapping[str, Any]) -> str:
    """The PKGBUILD (by sha256) and the commit it was approved at."""
    parts = []
    if pkg.get("commits"):
        parts.append("commit " + ", ".join(f"<code>{html.escape(c[:12])}</code>"
                                           for c in pkg["commits"]))  # fmt: skip
    if pkg.get("pkgbuild_sha256"):
        parts.append(f"PKGBUILD <code>{html.escape(pkg['pkgbuild_sha256'][:16])}…</code>")
    return ("<br><small>" + "; ".join(parts) + "</small>") if parts else ""


def _indexes(provenance: list[dict[str, Any]], names: Mapping[str, str]) -> dict[str, bytes]:
    """``packages.html`` (each package, every signed version) and ``maintainers.html`` (each
    maintainer, what they approved), linking back to the rows of ``index.html``."""
    by_package: dict[str, list[tuple[int, str, str]]] = {}
    by_maintainer: dict[str, list[tuple[int, str, str]]] = {}
    for p in provenance:
        for pkg in p["packages"]:
            row = (p["entry"], str(pkg["name"]), str(pkg["version"]))
            by_package.setdefault(row[1], []).append(row)
            for fpr in pkg["approved_by"]:
                by_maintainer.setdefault(names.get(fpr.upper(), fpr[-16:]), []).append(row)

    def link(row: tuple[int, str, str]) -> str:
        entry, name, version = row
        return (f'<a href="index.html#{_anchor(name, version)}">{html.escape(name)} '
                f"{html.escape(version)}</a> (log entry {entry})")  # fmt: skip

    def page(title: str, groups: dict[str, list[tuple[int, str, str]]]) -> bytes:
        items = "".join(
            f"<li><strong>{html.escape(k)}</strong>: " + ", ".join(link(r) for r in v) + "</li>"
            for k, v in sorted(groups.items())
        )
        return (f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{STYLE}"
                f"</style><h1>{title}</h1><p><a href=index.html>all signed databases</a></p>"
                f"<ul>{items}</ul>").encode()  # fmt: skip

    return {"packages.html": page("Packages", by_package),
            "maintainers.html": page("Approvals by maintainer", by_maintainer)}  # fmt: skip


def render(
    provenance: list[dict[str, Any]],
    adoptions: list[dict[str, Any]],
    names: Mapping[str, str],
    violations: list[str],
    proofs: Mapping[int, bytes] | None = None,
) -> dict[str, bytes]:
    """``index.html``: every signed database, newest first, with the evidence behind each
    package; ``packages.html`` and ``maintainers.html``, the same by package and by
    maintainer; ``proofs/N.tlog-proof``, each entry's inclusion proof (C2SP tlog-proof) in
    the log's newest checkpoint, when ``proofs`` gives them. ``names``: fingerprint -> the
    user ID to show."""
    proofs = proofs or {}
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
                f"<tr><td>{_entry(p['entry'], proofs)}</td><td>{where}</td>"
                f'<td id="{_anchor(pkg["name"], pkg["version"])}">{html.escape(pkg["name"])} '
                f"{html.escape(pkg['version'])}{moved}</td>"
                f"<td class=approved>approved by {_who(pkg['approved_by'], names)}"
                f"{_change(pkg)}</td>"
                f"<td class=built>built by {_who(pkg['built_by'], names)}, each attesting "
                f"<code>{html.escape(str(pkg.get('sha256', '')))}</code></td></tr>"
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
        "<p>By <a href=packages.html>package</a> · by <a href=maintainers.html>maintainer"
        "</a>. Each log entry links to its inclusion proof in the log's checkpoint.</p>"
        + (f"<h2>Adopted repositories</h2><ul>{adopted}</ul>" if adopted else "")
        + "<h2>Signed databases</h2><table><tr><th>log entry</th><th>repository</th>"
        "<th>package</th><th>approvals</th><th>builds</th></tr>" + "".join(rows) + "</table>"
    )
    out = {"index.html": page.encode(), **_indexes(provenance, names)}
    for index, proof in proofs.items():
        out[f"proofs/{index}.tlog-proof"] = proof
    return out


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
