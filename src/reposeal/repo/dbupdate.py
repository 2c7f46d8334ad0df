"""``reposeal db add|remove|verify``: repo-add's job, done safely.

Order of work, so that nothing is half-written: lock -> read the current database ->
read and validate every package -> plan (pure; refusals stop here) -> render archives ->
sign -> publish one generation atomically -> only then delete replaced package files.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.package import read_package
from reposeal.alpm.syncdb import Entry, read_entries, render_archive, validate_entries
from reposeal.errors import InvalidDatabaseError, RefusedError
from reposeal.openpgp.gpg import GoodSignature, gpg_verify
from reposeal.openpgp.signer import Signer
from reposeal.repo.changes import AddRules, Plan, plan_add, plan_remove
from reposeal.repo.lock import database_lock
from reposeal.repo.paths import RepoPaths
from reposeal.repo.publish import publish

Progress = Callable[[str], None]
PARALLEL_THRESHOLD = 32  # below this, a process pool costs more than it saves


@dataclass(frozen=True)
class UpdateOptions:
    signer: Signer | None = None
    verify_existing: bool = False  # repo-add -v: check the current signature first
    gnupghome: Path | None = None  # keyring for verification
    include_sigs: bool = False
    remove_old_files: bool = False  # repo-add -R
    rules: AddRules = field(default_factory=AddRules)
    wait: float = 0.0
    jobs: int = 0  # package readers; 0 = one per CPU


@dataclass
class Report:
    """What an update did, for humans and for ``--json``."""

    database: str
    added: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    downgraded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    signed_by: str | None = None
    generation: str | None = None
    packages: int = 0

    @classmethod
    def of(cls, paths: RepoPaths, plan: Plan) -> Report:
        return cls(
            database=str(paths.archive("db")),
            added=plan.added,
            upgraded=plan.upgraded,
            downgraded=plan.downgraded,
            removed=plan.removed,
            refreshed=plan.refreshed,
            skipped=plan.skipped,
            packages=len(plan.entries),
        )


def _entry_from_file(args: tuple[Path, bool]) -> Entry:
    path, include_sig = args
    pkg = read_package(path, include_sig=include_sig)
    return Entry.from_package(pkg.facts, pkg.files)


def read_package_entries(
    paths: Sequence[Path], include_sigs: bool, jobs: int, progress: Progress
) -> list[Entry]:
    """Read packages (in parallel when there are many); fail on the first bad one."""
    work = [(p, include_sigs) for p in paths]
    workers = jobs or os.cpu_count() or 1
    if len(work) < PARALLEL_THRESHOLD or workers == 1:
        out = []
        for i, item in enumerate(work, 1):
            progress(f"Adding package '{item[0]}' ({i}/{len(work)})")
            out.append(_entry_from_file(item))
        return out
    out = []
    step = max(1, len(work) // 20)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, entry in enumerate(pool.map(_entry_from_file, work, chunksize=64), 1):
            out.append(entry)
            if i % step == 0 or i == len(work):
                progress(f"Read {i}/{len(work)} packages")
    return out


def _check_signer(opts: UpdateOptions) -> str | None:
    """Fail before any work if the signing key is not usable."""
    return opts.signer.fingerprint if opts.signer is not None else None


def _load(paths: RepoPaths, opts: UpdateOptions, progress: Progress) -> dict[str, Entry]:
    db = paths.archive("db")
    if not db.exists():
        return {}
    if opts.verify_existing:
        sig = db.with_name(db.name + ".sig")
        if sig.exists():
            progress("Verifying database signature...")
            gpg_verify(db, sig, opts.gnupghome)
        else:
            progress("No existing signature found, skipping verification.")
    progress(f"Reading {db.name}...")
    return read_entries(db, paths.archive("files"))


def _write(
    paths: RepoPaths, plan: Plan, opts: UpdateOptions, report: Report, progress: Progress
) -> None:
    progress(f"Creating updated database file '{paths.archive('db')}'")
    files: dict[str, bytes] = {}
    for part, is_files in (("db", False), ("files", True)):
        name = paths.archive_name(part)
        files[name] = render_archive(plan.entries.values(), is_files, paths.compression)
        if opts.signer is not None:
            progress(f"Signing database '{name}'...")
            files[name + ".sig"] = opts.signer.sign_detached(io.BytesIO(files[name]))
    report.generation = publish(paths, files)


def add(db_path: Path, packages: Sequence[Path], opts: UpdateOptions, progress: Progress) -> Report:
    """Add (or update) packages; all or nothing."""
    paths = RepoPaths.from_db_path(db_path)
    signer_fpr = _check_signer(opts)
    with database_lock(paths.lock, wait=opts.wait):
        current = _load(paths, opts, progress)
        new = read_package_entries(packages, opts.include_sigs, opts.jobs, progress)
        plan = plan_add(current, new, opts.rules)
        if plan.refusals:
            raise RefusedError(plan.refusals, path=paths.archive("db"))
        report = Report.of(paths, plan)
        report.signed_by = signer_fpr
        if plan.changed or not paths.archive("db").exists():
            _write(paths, plan, opts, report, progress)
        else:
            progress("No packages modified, nothing to do.")
        if opts.remove_old_files and report.generation:
            for dirpath in {p.parent for p in packages}:
                for old in plan.replaced_files:
                    for f in (dirpath / old, dirpath / (old + ".sig")):
                        if f.exists():
                            progress(f"Removing old package file '{f.name}'")
                            f.unlink()
                            report.deleted_files.append(str(f))
        return report


def remove(db_path: Path, names: Sequence[str], opts: UpdateOptions, progress: Progress) -> Report:
    """Remove packages by name; all or nothing."""
    paths = RepoPaths.from_db_path(db_path)
    signer_fpr = _check_signer(opts)
    with database_lock(paths.lock, wait=opts.wait):
        if not paths.archive("db").exists():
            raise InvalidDatabaseError("repository file was not found", path=paths.archive("db"))
        current = _load(paths, opts, progress)
        plan = plan_remove(current, names)
        if plan.refusals:
            raise RefusedError(plan.refusals, path=paths.archive("db"))
        report = Report.of(paths, plan)
        report.signed_by = signer_fpr
        if plan.changed:
            _write(paths, plan, opts, report, progress)
        return report


@dataclass
class VerifyReport:
    database: str
    packages: int
    signatures: dict[str, str]  # archive -> signer fingerprint, or "unsigned"
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    db_path: Path, gnupghome: Path | None, allow_unsigned: bool, progress: Progress
) -> VerifyReport:
    """Check signatures and every entry of the sync and files databases."""
    paths = RepoPaths.from_db_path(db_path)
    db = paths.archive("db")
    if not db.exists():
        raise InvalidDatabaseError("repository file was not found", path=db)
    signatures: dict[str, str] = {}
    problems: list[str] = []
    for part in ("db", "files"):
        archive = paths.archive(part)
        if not archive.exists():
            continue
        sig = archive.with_name(archive.name + ".sig")
        if sig.exists():
            progress(f"Verifying {sig.name}...")
            good: GoodSignature = gpg_verify(archive, sig, gnupghome)
            signatures[archive.name] = good.fingerprint
        else:
            signatures[archive.name] = "unsigned"
            if not allow_unsigned:
                problems.append(f"{archive.name} has no signature ({sig.name} is missing)")
    progress(f"Checking every entry of {db.name}...")
    entries = read_entries(db, paths.archive("files"), DEFAULT_LIMITS)
    problems += validate_entries(entries)
    return VerifyReport(str(db), len(entries), signatures, problems)
