"""Planning a database update: which entries change, and what is refused. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reposeal.alpm.desc import single
from reposeal.alpm.syncdb import Entry
from reposeal.alpm.vercmp import vercmp


@dataclass(frozen=True, slots=True)
class AddRules:
    """How ``db add`` treats versions already in the database."""

    only_new: bool = False  # repo-add -n: leave entries of the same version alone
    skip_downgrades: bool = False  # repo-add -p: skip older packages instead of refusing
    allow_downgrade: bool = False  # force a lower version in (needs an explicit flag)
    # a personal repository's rebuild of the same version (`aur build -f`): the new file
    # replaces the old one, said out loud (a published version never changes otherwise)
    replace_same_version: bool = False


@dataclass(slots=True)
class Plan:
    """The database after the update, and what to tell the user."""

    entries: dict[str, Entry]
    added: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    downgraded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)  # same file, new metadata (PGPSIG)
    rebuilt: list[str] = field(default_factory=list)  # same version, another file (allowed)
    skipped: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    replaced_files: list[str] = field(default_factory=list)  # old package files (for -R)

    @property
    def changed(self) -> bool:
        return bool(
            self.added
            or self.upgraded
            or self.downgraded
            or self.removed
            or self.refreshed
            or self.rebuilt
        )


def filename_of(e: Entry) -> str:
    return single(e.fields(), "FILENAME", f"entry {e.dirname}")


def _newest_of_each(new: Sequence[Entry], plan: Plan) -> list[Entry]:
    """Several builds of one package in one request (a CI script's ``*.pkg.tar.zst`` in a
    folder that keeps old builds): the newest by vercmp is added, whatever the order of the
    names (repo-add would take the last, so 1.9 after 1.10); the older ones are skipped,
    and their files count as replaced (-R deletes them, as repo-add's run ends up doing).
    One version given twice with different files is ambiguous: refused."""
    newest: dict[str, Entry] = {}
    for e in new:
        held = newest.get(e.name)
        if held is None:
            newest[e.name] = e
            continue
        order = vercmp(e.version, held.version)
        if order == 0:
            if held.version != e.version or held.sha256 != e.sha256:
                plan.refusals.append(
                    f"{e.name}: given twice in one request as {held.version} and {e.version} "
                    "with different files: give one"
                )
            continue
        older, newest[e.name] = (held, e) if order > 0 else (e, held)
        plan.skipped.append(
            f"{older.name} {older.version}: older than {newest[e.name].version}, given too"
        )
        plan.replaced_files.append(filename_of(older))
    return list(newest.values())


def plan_add(current: Mapping[str, Entry], new: Sequence[Entry], rules: AddRules) -> Plan:
    """Decide what adding ``new`` to ``current`` does; refusals leave nothing changed."""
    plan = Plan(entries=dict(current))
    for e in _newest_of_each(new, plan):
        label = f"{e.name} {e.version}"
        old = current.get(e.name)
        if old is None:
            plan.added.append(label)
            plan.entries[e.name] = e
            continue
        order = vercmp(e.version, old.version)
        if order == 0:
            if old.version == e.version and old.sha256 == e.sha256:
                if old.desc == e.desc or rules.only_new:
                    plan.skipped.append(f"{label}: already in the database")
                else:
                    plan.refreshed.append(label)
                    plan.entries[e.name] = e
            elif rules.only_new:
                plan.skipped.append(f"{label}: an entry for this version exists (--new)")
            elif rules.replace_same_version:
                plan.rebuilt.append(
                    f"{label}: REPLACED by a rebuild of the same version (sha256 "
                    f"{old.sha256[:16]}… -> {e.sha256[:16]}…); clients holding the old file "
                    "see a checksum mismatch until they sync"
                )
                if filename_of(old) != filename_of(e):
                    plan.replaced_files.append(filename_of(old))
                plan.entries[e.name] = e
            else:
                plan.refusals.append(
                    f"{e.name} {e.version}: the database already has {old.version} with "
                    f"different content (sha256 {old.sha256[:16]}… vs {e.sha256[:16]}…); "
                    "a published version never changes: bump pkgrel and rebuild (in a "
                    "personal repository, --replace-same-version replaces it)"
                )
            continue
        if order < 0:
            if rules.allow_downgrade:
                plan.downgraded.append(f"{e.name} {old.version} -> {e.version}")
            elif rules.skip_downgrades:
                plan.skipped.append(f"{label}: a newer version ({old.version}) is present")
                continue
            else:
                plan.refusals.append(
                    f"{e.name}: {e.version} is older than {old.version} in the database; "
                    "downgrades are refused (use --allow-downgrade if you really mean it)"
                )
                continue
        else:
            plan.upgraded.append(f"{e.name} {old.version} -> {e.version}")
        old_file = filename_of(old)
        if old_file != filename_of(e):
            plan.replaced_files.append(old_file)
        plan.entries[e.name] = e
    return plan


def plan_remove(current: Mapping[str, Entry], names: Sequence[str]) -> Plan:
    """Decide what removing ``names`` does; unknown names are refused."""
    plan = Plan(entries=dict(current))
    for name in names:
        old = plan.entries.pop(name, None)
        if old is None:
            if name not in current:
                plan.refusals.append(f"{name}: no such package in the database")
            continue
        plan.removed.append(f"{name} {old.version}")
    return plan
