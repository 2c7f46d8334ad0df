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


def _change(pkg: Mapping[str, Any], texts: Mapping[str, bytes]) -> str:
    """The PKGBUILD (by sha256, linked to its diff when its text is published) and the
    commit it was approved at."""
    parts = []
    if pkg.get("commits"):
        parts.append("commit " + ", ".join(f"<code>{html.escape(c[:12])}</code>"
                                           for c in pkg["commits"]))  # fmt: skip
    digest = pkg.get("pkgbuild_sha256")
    if digest:
        short = f"<code>{html.escape(digest[:16])}…</code>"
        if digest in texts:
            parts.append(f'PKGBUILD {short} (<a href="pkgbuilds/{html.escape(digest)}.html" '
                         'class=diff>the approved change</a>)')  # fmt: skip
        else:
            parts.append(f"PKGBUILD {short} (its text is not published)")
    return ("<br><small>" + "; ".join(parts) + "</small>") if parts else ""


def _diff_pages(provenance: list[dict[str, Any]], texts: Mapping[str, bytes]) -> dict[str, bytes]:
    """``pkgbuilds/SHA256.html`` for each published PKGBUILD text: what changed from the one
    approved before it for the same pkgbase (the whole text for the first), as a unified
    diff; ``pkgbuilds/SHA256``, the text itself, for anyone to hash."""
    out: dict[str, bytes] = {}
    last: dict[str, str] = {}  # pkgbase -> sha256 of the PKGBUILD signed before
    for p in provenance:
        for pkg in p["packages"]:
            digest, base = pkg.get("pkgbuild_sha256"), str(pkg.get("pkgbase") or pkg["name"])
            if not digest or digest == last.get(base):
                continue
            before = last.get(base)
            last[base] = digest
            if digest not in texts or f"pkgbuilds/{digest}.html" in out:
                continue
            if before is not None and before in texts:
                lines = _diff_lines(texts[before], texts[digest], before, digest)
                was = f"the PKGBUILD approved before (sha256 <code>{before}</code>)"
            else:
                lines = [f"+{line}" for line in texts[digest].decode(errors="replace").split("\n")]
                was = "no earlier PKGBUILD of it in the log" + (
                    " whose text is published" if before else ""
                )
            body = "\n".join(
                f"<span class={_CLASS.get(line[:1], 'ctx')}>{html.escape(line)}</span>"
                for line in lines
            )
            title = html.escape(f"{base}: PKGBUILD {digest[:16]}")
            out[f"pkgbuilds/{digest}.html"] = (
                f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{STYLE}"
                f"{DIFF_STYLE}</style><h1>{title}</h1><p>The PKGBUILD the maintainers "
                f"approved (log entry {p['entry']}, sha256 <code>{digest}</code>, <a "
                f'href="{digest}">its text</a>), against {was}.</p><pre>{body}</pre>'
                "<p><a href=../index.html>all signed databases</a></p>"
            ).encode()
            out[f"pkgbuilds/{digest}"] = texts[digest]
    return out


def _diff_lines(old: bytes, new: bytes, before: str, digest: str) -> list[str]:
    import difflib

    return list(difflib.unified_diff(
        old.decode(errors="replace").split("\n"), new.decode(errors="replace").split("\n"),
        f"PKGBUILD {before[:16]}", f"PKGBUILD {digest[:16]}", lineterm="",
    ))  # fmt: skip


_CLASS = {"+": "add", "-": "del", "@": "hunk"}
DIFF_STYLE = "pre{background:#f6f6f6;padding:1em}.add{color:#064}.del{color:#a00}.hunk{color:#558}"


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
    pkgbuilds: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """``index.html``: every signed database, newest first, with the evidence behind each
    package; ``packages.html`` and ``maintainers.html``, the same by package and by
    maintainer; ``proofs/N.tlog-proof``, each entry's inclusion proof (C2SP tlog-proof) in
    the log's newest checkpoint, when ``proofs`` gives them; ``pkgbuilds/SHA256.html``, the
    change each approval approved, for the texts ``pkgbuilds`` gives (sha256 -> bytes; any
    that does not match its hash is left out). ``names``: fingerprint -> the user ID to
    show."""
    from reposeal.enclave.pkgbuilds import verified

    proofs = proofs or {}
    texts = verified(dict(pkgbuilds or {}))
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
                f"{_change(pkg, texts)}</td>"
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
    out = {"index.html": page.encode(), **_indexes(provenance, names),
           **_diff_pages(provenance, texts)}  # fmt: skip
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
