"""The hold: a finding about the machine (a failed self-check, a changed system file that
AIDE, rkhunter or debsums reports) stops the enclave from signing until an admin has looked
and clears it. ``HOME/HOLD`` holds the findings; while it exists, `enclave run` takes no job
(they wait in the bridge's queue) and says so in its log; clearing it is recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reposeal.errors import ReposealError
from reposeal.fsio import atomic_write

HOLD = "HOLD"
CLEARED = "HOLD.cleared"  # one JSON line per hold cleared: what it was, who said why


class OnHoldError(ReposealError):
    """The enclave is on hold: it signs nothing until an admin clears the hold."""

    exit_code = 5


def hold(home: Path, source: str, findings: list[str], now: float | None = None) -> None:
    """Put the enclave on hold (or add ``findings`` to the hold it is on)."""
    current = held(home) or {"since": now or time.time(), "findings": []}
    current["findings"] = [*current["findings"], {"source": source, "findings": findings[:50],
                                                  "at": now or time.time()}]  # fmt: skip
    atomic_write(home / HOLD, json.dumps(current, indent=2).encode())


def held(home: Path) -> dict[str, Any] | None:
    """The hold the enclave is on, or None. A hold file that does not parse still holds."""
    path = home / HOLD
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_bytes()[: 1 << 20])
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        return {"since": path.stat().st_mtime, "findings": [{"source": "unreadable HOLD",
                                                             "findings": []}]}  # fmt: skip
    return doc


def describe(doc: dict[str, Any]) -> str:
    parts = []
    for f in doc.get("findings", []):
        if isinstance(f, dict):
            shown = "; ".join(str(x) for x in f.get("findings", [])[:3])
            parts.append(f"{f.get('source', '?')}: {shown}" if shown else str(f.get("source")))
    return " | ".join(parts) or "on hold"


def refuse_if_held(home: Path) -> None:
    doc = held(home)
    if doc is not None:
        since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(doc.get("since", 0))))
        raise OnHoldError(
            f"the enclave is on hold since {since} UTC ({describe(doc)}): it signs nothing "
            "until an admin has looked and runs "
            f"`reposeal enclave clear-hold --home {home} --reason TEXT`"
        )


def clear(home: Path, reason: str, now: float | None = None) -> dict[str, Any]:
    """Lift the hold, keeping what it was and why it was lifted."""
    doc = held(home)
    if doc is None:
        raise ReposealError("the enclave is not on hold")
    if not reason.strip():
        raise ReposealError("say why the hold is cleared (--reason): it is kept with the hold")
    line = json.dumps({"cleared": now or time.time(), "reason": reason, "hold": doc})
    with open(home / CLEARED, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    (home / HOLD).unlink()
    return doc
