"""The status pages of the repo and source machines: server-rendered HTML, no scripts.

Pure: a status document in, a page out. Every string shown came from someone (package
names, versions, reasons, user IDs, builders' reports): all of it is escaped.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:70em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{padding:.25em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #ddd}"
    ".bad{color:#a00}.ok{color:#060}.muted{color:#666}code{font-size:90%}"
)


def _e(value: object) -> str:
    return html.escape(str(value))


def _page(title: str, generated: float, sections: Iterable[str]) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(generated))
    body = "\n".join(sections)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content=30><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>"
        f"<p class=muted>as of {stamp}; this page reloads every 30 s</p>\n{body}</body></html>"
    ).encode()


def _table(section_id: str, title: str, head: list[str], rows: list[list[str]], empty: str) -> str:
    """``rows`` hold HTML already escaped."""
    if not rows:
        return f"<h2 id={section_id}>{_e(title)}</h2><p class=muted>{_e(empty)}</p>"
    heads = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<h2 id={section_id}>{_e(title)}</h2><table><tr>{heads}</tr>{body}</table>"


def _list(items: Iterable[object], cls: str = "") -> str:
    shown = [f"<li>{_e(i)}</li>" for i in items]
    if not shown:
        return ""
    return f"<ul class={cls}>{''.join(shown)}</ul>" if cls else f"<ul>{''.join(shown)}</ul>"


def _source(w: Mapping[str, Any]) -> str:
    if "remove" in w:
        return f"removal of {_e(', '.join(w['remove']))} from {_e(w['repo'])}"
    return f"{_e(w['repo'])}/{_e(w['pkgbase'])} <code>{_e(str(w['commit'])[:12])}</code>"


def _days(seconds: float) -> str:
    if seconds < 0:
        return "<span class=bad>expired</span>"
    text = f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} hours"
    return f"<span class={'bad' if seconds < 86400 else 'ok'}>{text}</span>"


def _entry_summary(entry: Mapping[str, Any]) -> str:
    kind = str(entry.get("type", "?"))
    where = "/".join(str(entry[k]) for k in ("repo", "arch") if k in entry)
    parts = [f"<strong>{_e(kind)}</strong>", _e(where)]
    adds = entry.get("admitted")  # the packages it added, each with the approvals it used
    if isinstance(adds, dict) and adds:
        names = sorted(str(n) for n in adds)
        more = f" and {len(names) - 8} more" if len(names) > 8 else ""
        parts.append("added " + _e(", ".join(names[:8])) + more)
    removes = entry.get("removes")
    if isinstance(removes, list) and removes:
        parts.append("removed " + _e(", ".join(str(r) for r in removes[:8])))
    if isinstance(entry.get("db_sha256"), str):
        parts.append(f"database <code>{_e(entry['db_sha256'][:16])}</code>")
    used = [k for k in ("used_overrides", "used_removals") if entry.get(k)]
    for k in used:
        parts.append(f"{_e(k.replace('_', ' '))}: {len(entry[k])}")
    return " ".join(p for p in parts if p)


def _hostchecks(checks: Sequence[Mapping[str, Any]]) -> str:
    """This machine's host checks (AIDE, rkhunter, debsums): their last results."""
    rows = []
    for c in checks:
        if c.get("unreadable"):
            state = "<span class=bad>its result file does not read</span>"
        elif c.get("failed"):
            state = "<span class=bad>could not run</span>"
        elif c.get("findings"):
            state = f"<span class=bad>{int(c['findings'])} findings</span> (see the journal)"
        else:
            state = "<span class=ok>clean</span>"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(c.get("at", 0) or 0)))
        rows.append([_e(c.get("tool", "?")), state, _e(when) if c.get("at") else ""])
    return _table("hostchecks", "Host checks of this machine", ["tool", "last result", "at"],
                  rows, "no host check has run yet")  # fmt: skip


def render_repo(doc: Mapping[str, Any], generated: float | None = None) -> bytes:
    """The repo machine: what is published and until when, what is ready, what waits for
    which evidence, what was refused and why, the recent cycles and log entries."""
    sections = []
    alerts = [
        f"{a['repo']}/{a['arch']}: the database signature expires in "
        f"{a['seconds_left'] / 3600:.1f} h and has not been refreshed"
        for a in doc.get("alerts", [])
    ]
    if alerts:
        sections.append(f"<h2 id=alerts class=bad>Alerts</h2>{_list(alerts, 'bad')}")
    sections.append(_table("published", "Published databases", ["repository", "database",
        "signature holds"], [[_e(f"{p['repo']}/{p['arch']}"),
        f"<code>{_e(str(p.get('db_sha256', ''))[:16])}</code>", _days(p["seconds_left"])]
        for p in doc.get("published", [])], "nothing published yet"))  # fmt: skip
    sections.append(_table("ready", "Ready to sign", ["source", "packages"],
        [[_source(w), _e(", ".join(w.get("packages", [])))] for w in doc.get("ready", [])],
        "nothing is ready"))  # fmt: skip
    sections.append(_table("waiting", "Waiting for evidence", ["source", "what it lacks"],
        [[_source(w), _list(w.get("missing", []))] for w in doc.get("waiting", [])],
        "nothing waits"))  # fmt: skip
    sections.append(_table("refused", "Parked and refused", ["source", "state", "reasons"],
        [[_e(f"{p['repo']}/{p['arch']} {p['pkgbase']}") + f" <code>{_e(p['commit'][:12])}</code>",
          "parked" if p.get("alone") else "retrying alone", _list(p.get("reasons", []), "bad")]
         for p in doc.get("parked", [])], "nothing was refused"))  # fmt: skip
    sections.append(_table("cycles", "Recent update cycles", ["cycle", "repository", "step",
        "sources"], [[_e(c["id"]), _e(f"{c['repo']}/{c['arch']}"),
        _e(c["step"]) + (_list(c.get("reasons", []), "bad") if c["step"] == "failed" else ""),
        _e(", ".join(f"{s[0]}@{str(s[1])[:12]}" if isinstance(s, list | tuple) else str(s)
                     for s in c.get("sources", [])))]
        for c in doc.get("cycles", [])], "no cycle yet"))  # fmt: skip
    log = doc.get("log", {})
    sections.append(_table("log", f"The log ({log.get('size', 0)} entries; the newest)",
        ["entry", "what it signed"], [[_e(i), _entry_summary(e)] for i, e in
        log.get("entries", [])], "the log is empty"))  # fmt: skip
    if "hostchecks" in doc:
        sections.append(_hostchecks(doc["hostchecks"]))
    received = doc.get("packages", 0)
    statements = ", ".join(f"{n} {k}" for k, n in sorted(doc.get("statements", {}).items()))
    sections.append(f"<p class=muted>{_e(received)} packages received; statements: "
                    f"{_e(statements or 'none')}</p>")  # fmt: skip
    return _page("reposeal: repo machine", generated or time.time(), sections)


def _person(fpr: str, names: Mapping[str, str]) -> str:
    return f'<span title="{_e(fpr)}">{_e(names.get(fpr.upper(), fpr[-16:]))}</span>'


def render_source(
    proposals: list[dict[str, Any]],
    names: Mapping[str, str],
    generated: float | None = None,
    hostchecks: Sequence[Mapping[str, Any]] | None = None,
) -> bytes:
    """The source machine: each proposal with who approved it, how many approvals it still
    needs and who could give them; its builds, and where builders disagree, what differs."""
    rows = []
    for p in proposals:
        approvals = []
        for repo, a in sorted(p.get("approvals", {}).items()):
            signers = a.get("signers", [])
            who = ", ".join(_person(f, names) for f in signers) or "<em>nobody yet</em>"
            line = f"{_e(repo)}: approved by {who}"
            needed = int(a.get("needed_more", 0))
            if needed:
                line += f"; <strong class=bad>{needed} more needed</strong>"
                could = [f for f in a.get("could_approve", []) if f not in signers]
                if could:
                    line += " (from " + ", ".join(_person(f, names) for f in could) + ")"
            else:
                line += " <span class=ok>(enough)</span>"
            approvals.append(f"<li class=approval data-repo={_e(repo)}>{line}</li>")
        withdrawn = [
            f"{repo}: withdrawn by " + ", ".join(names.get(f.upper(), f[-16:]) for f in who)
            for repo, who in sorted(p.get("withdrawn", {}).items())
        ]
        builds = []
        for job in p.get("jobs", []):
            built = ", ".join(job.get("built_by", [])) or "nobody yet"
            line = f"{_e(job['id'])} ({_e(job.get('state', ''))}): built by {_e(built)}"
            builds.append(line + _list(job.get("differences", []), "bad"))
        author = p.get("author")
        rows.append([
            f"<strong>{_e(p['pkgbase'])}</strong> <code>{_e(str(p['commit'])[:12])}</code>",
            _person(author, names) if author else "<em>unknown</em>",
            f"<ul>{''.join(approvals)}</ul>" + _list(withdrawn, "bad"),
            "<br>".join(builds) or "<span class=muted>no build job yet</span>",
        ])  # fmt: skip
    sections = [_table("proposals", "Proposals", ["change", "author", "approvals", "builds"],
                       rows, "no proposal yet")]  # fmt: skip
    if hostchecks is not None:
        sections.append(_hostchecks(hostchecks))
    return _page("reposeal: source machine", generated or time.time(), sections)
