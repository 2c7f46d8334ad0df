"""What changed between two databases: the basis of every signing decision. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reposeal.alpm.vercmp import vercmp


@dataclass(frozen=True, slots=True)
class PackageState:
    """What a database says about one package name."""

    version: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    old: PackageState | None
    new: PackageState | None


@dataclass(frozen=True, slots=True)
class DbDiff:
    """Every package name of either database, in exactly one category, sorted by name."""

    added: tuple[Change, ...]
    upgraded: tuple[Change, ...]
    downgraded: tuple[Change, ...]
    removed: tuple[Change, ...]
    unchanged: tuple[Change, ...]
    # same version, other file: never legitimate for a published version (policy rule 3)
    content_changed: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return bool(
            self.added or self.upgraded or self.downgraded or self.removed or self.content_changed
        )

    def summary(self) -> dict[str, list[str]]:
        """A JSON-ready view: category -> ["name old -> new", ...]."""

        def fmt(c: Change) -> str:
            old = c.old.version if c.old else "-"
            new = c.new.version if c.new else "-"
            return f"{c.name} {old} -> {new}"

        return {
            "added": [fmt(c) for c in self.added],
            "upgraded": [fmt(c) for c in self.upgraded],
            "downgraded": [fmt(c) for c in self.downgraded],
            "removed": [fmt(c) for c in self.removed],
            "content_changed": [fmt(c) for c in self.content_changed],
            "unchanged": [c.name for c in self.unchanged],
        }


def diff(old: Mapping[str, PackageState], new: Mapping[str, PackageState]) -> DbDiff:
    """Classify every package name by how it moved from ``old`` to ``new``."""
    buckets: dict[str, list[Change]] = {
        k: [] for k in ("added", "upgraded", "downgraded", "removed", "unchanged", "content")
    }
    for name in sorted(old.keys() | new.keys()):
        o, n = old.get(name), new.get(name)
        change = Change(name, o, n)
        if o is None:
            buckets["added"].append(change)
        elif n is None:
            buckets["removed"].append(change)
        else:
            c = vercmp(n.version, o.version)
            if c > 0:
                buckets["upgraded"].append(change)
            elif c < 0:
                buckets["downgraded"].append(change)
            elif n.sha256 != o.sha256:
                buckets["content"].append(change)
            else:
                buckets["unchanged"].append(change)
    return DbDiff(
        added=tuple(buckets["added"]),
        upgraded=tuple(buckets["upgraded"]),
        downgraded=tuple(buckets["downgraded"]),
        removed=tuple(buckets["removed"]),
        unchanged=tuple(buckets["unchanged"]),
        content_changed=tuple(buckets["content"]),
    )
