"""What an update cycle publishes, fixed when it is planned (``CyclePlan``): a typed record
the planners (``cycle``, ``move``, ``adoption``) write and the cycle's steps read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CyclePlan:
    """What one cycle publishes, fixed when it is planned: its sources (pkgbase and commit,
    or a removal, move or adoption by its id), the package files by sha256, the names it
    removes, the job files of its evidence (name -> blob sha256); a move's lower layer,
    names and the signatures its files carry; an adoption's packager signatures and
    compression."""

    sources: tuple[tuple[str, str], ...]
    packages: Mapping[str, str] = field(default_factory=dict)  # filename -> sha256
    remove: tuple[str, ...] = ()
    evidence: Mapping[str, str] = field(default_factory=dict)  # job file -> blob sha256
    moved_from: str | None = None
    names: tuple[str, ...] = ()
    package_signatures: Mapping[str, str] = field(default_factory=dict)  # file -> base64
    adopt: bool = False
    compression: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "sources": [list(s) for s in self.sources],
            "packages": dict(self.packages),
            "remove": list(self.remove),
            "evidence": dict(self.evidence),
        }
        if self.moved_from is not None:
            doc |= {"moved_from": self.moved_from, "names": list(self.names)}
        if self.package_signatures or self.moved_from is not None or self.adopt:
            doc["package_signatures"] = dict(self.package_signatures)
        if self.adopt:
            doc |= {"adopt": True, "compression": self.compression}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CyclePlan:
        """A plan as the cycles' database keeps it (written by ``to_json``)."""
        return cls(
            tuple((str(b), str(c)) for b, c in doc.get("sources", [])),
            {str(k): str(v) for k, v in dict(doc.get("packages", {})).items()},
            tuple(str(n) for n in doc.get("remove", [])),
            {str(k): str(v) for k, v in dict(doc.get("evidence", {})).items()},
            doc.get("moved_from"),
            tuple(str(n) for n in doc.get("names", [])),
            {str(k): str(v) for k, v in dict(doc.get("package_signatures", {})).items()},
            bool(doc.get("adopt", False)),
            doc.get("compression"),
        )
