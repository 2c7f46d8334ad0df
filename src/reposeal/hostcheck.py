"""Host integrity with the standard tools: AIDE (files against a baseline made at
deployment), rkhunter (rootkits), debsums (installed Debian packages against their
checksums). Each run ends in one clear log line and a metric; on the enclave, a finding
puts it on hold (``reposeal.enclave.hold``) until an admin clears it.

Reading what a tool said is pure (:func:`interpret`); running it is the caller's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# how each tool is run by default, and what its exit status means
TOOLS: dict[str, tuple[str, ...]] = {
    "aide": ("aide", "--check"),
    "rkhunter": ("rkhunter", "--check", "--skip-keypress", "--report-warnings-only",
                 "--nocolors"),
    "debsums": ("debsums", "--silent"),
}  # fmt: skip
PACKAGES = {"aide": "aide", "rkhunter": "rkhunter", "debsums": "debsums"}
_AIDE_ENTRY = re.compile(r"^\S+\s*[^:]*: (/.*)$")
_DEBSUMS = re.compile(r"(changed|missing) file (\S+)")


@dataclass
class Outcome:
    tool: str
    findings: list[str] = field(default_factory=list)
    error: str | None = None  # the tool could not check (its exit status says it failed)

    @property
    def clean(self) -> bool:
        return not self.findings and self.error is None


def _aide(status: int, out: str) -> Outcome:
    """AIDE: 0 no difference; 1-7 differences (1 added, 2 removed, 4 changed); 14 and up,
    an error."""
    if status == 0:
        return Outcome("aide")
    if status >= 14:
        return Outcome("aide", error=f"aide failed (exit status {status})")
    findings, section = [], ""
    for line in out.splitlines():
        if line.rstrip().endswith("entries:") and not line.startswith(" "):
            section = line.split()[0].lower()
            continue
        if line.startswith("Detailed information"):
            break
        m = _AIDE_ENTRY.match(line.strip())
        if section and m:
            findings.append(f"{section}: {m.group(1)}")
    return Outcome("aide", findings or [f"aide reports differences (exit status {status})"])


def _rkhunter(status: int, out: str) -> Outcome:
    """rkhunter: 0 no warning; 1 warnings (each a "Warning:" line); else an error."""
    if status == 0:
        return Outcome("rkhunter")
    warnings = [line.strip() for line in out.splitlines() if "warning" in line.lower()]
    if status == 1:
        return Outcome("rkhunter", warnings or ["rkhunter reports warnings"])
    return Outcome("rkhunter", error=f"rkhunter failed (exit status {status})")


def _debsums(status: int, out: str) -> Outcome:
    """debsums --silent: nothing and 0 when every file matches; the changed files named
    otherwise (exit status 2)."""
    changed = []
    for line in out.splitlines():
        m = _DEBSUMS.search(line)
        if m:
            changed.append(f"{m.group(1)}: {m.group(2)}")
        elif line.strip() and not line.startswith("debsums: no md5sums"):
            changed.append(line.strip())
    if status == 0 and not changed:
        return Outcome("debsums")
    if changed:
        return Outcome("debsums", changed)
    return Outcome("debsums", error=f"debsums failed (exit status {status})")


def interpret(tool: str, status: int, stdout: str, stderr: str) -> Outcome:
    """What a run of ``tool`` found, from its exit status and output."""
    reader = {"aide": _aide, "rkhunter": _rkhunter, "debsums": _debsums}[tool]
    return reader(status, stdout + ("\n" + stderr if tool == "debsums" else ""))
