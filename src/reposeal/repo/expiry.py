"""How long the published database signatures still hold (read from the mirror): what the
cycle refreshes, the status pages show and the metrics count."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DAY = 86400.0


@dataclass(frozen=True)
class Expiry:
    """A published database signature and how long it still holds."""

    repo: str
    arch: str
    db: Path
    signature: bytes
    seconds_left: float

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "arch": self.arch, "seconds_left": round(self.seconds_left)}


def expiries(mirror: Path, now: float | None = None) -> list[Expiry]:
    """Every published database signature that expires, with the time it has left."""
    import pysequoia

    now = time.time() if now is None else now
    out = []
    for sig_path in sorted(mirror.glob("*/os/*/*.db.tar*.sig")):
        db = sig_path.with_name(sig_path.name[: -len(".sig")])
        repo, arch = db.parent.parent.parent.name, db.parent.name
        if not db.name.startswith(f"{repo}.db.tar"):
            continue
        raw = sig_path.read_bytes()
        try:
            expires = pysequoia.Sig.from_bytes(raw).expiration
        except (RuntimeError, ValueError):  # unreadable: pacman refuses it; sign it anew
            out.append(Expiry(repo, arch, db, raw, 0.0))
            continue
        if expires is not None:
            out.append(Expiry(repo, arch, db, raw, expires.timestamp() - now))
    return out
