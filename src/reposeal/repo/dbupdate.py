"""``reposeal db add|remove|verify``: repo-add's job, done safely.

Order of work, so that nothing is half-written: lock -> read the current database ->
read and validate every package -> plan (pure; refusals stop here) -> render archives ->
sign -> publish one generation atomically -> only then delete replaced package files.

Speed: the archives are written as chunks with an index (see :mod:`reposeal.alpm.chunked`);
an update reads, checks and rewrites only the chunks holding the packages it touches.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reposeal.alpm import chunked
from reposeal.alpm.limits import MAX_INDEX_BYTES
from reposeal.alpm.package import read_package
from reposeal.alpm.safeio import read_limited
from reposeal.alpm.syncdb import (
    Entry,
    decompress_blob,
    entries_from_tars,
    read_blob,
    read_entries,
    render_archive,
    validate_entries,
)
from reposeal.errors import (
    InputError,
    InvalidDatabaseError,
    RefusedError,
    ReposealError,
    SigningError,
)
from reposeal.openpgp.gpg import gpg_verify
from reposeal.openpgp.signer import NO_OPTIONS, Signer, SignOptions
from reposeal.protocol.lock import database_lock
from reposeal.repo.changes import AddRules, Plan, filename_of, plan_add, plan_remove
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
    sign_options: SignOptions = NO_OPTIONS  # e.g. an expiry for the database signatures
    unsigned: bool = False  # publish a signed repository unsigned (said, never by default)
    new_key: bool = False  # sign with another key than the current signature's
    signer_spec: str | None = None  # how ``signer`` was named: the repository remembers it


@dataclass
class Report:
    """What an update did, for humans and for ``--json``."""

    database: str
    added: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    downgraded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)  # same version, another file (loudly)
    skipped: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # package files no entry names now
    # entries the files database lacked, filled from the package files beside the database,
    # and those that still lack one (no package file there, or another one)
    files_filled: list[str] = field(default_factory=list)
    files_missing: list[str] = field(default_factory=list)
    signed_by: str | None = None
    generation: str | None = None
    packages: int = 0


def _entry_from_file(args: tuple[Path, bool]) -> Entry:
    path, include_sig = args
    pkg = read_package(path, include_sig=include_sig)
    return Entry.from_package(pkg.facts, pkg.files)


def _die_with_parent() -> None:
    """A package reader ends when the command that started it does (even on kill -9)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before we got here
        os._exit(1)


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
    from concurrent.futures import ProcessPoolExecutor  # costly import, only when needed

    out = []
    step = max(1, len(work) // 20)
    with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent) as pool:
        for i, entry in enumerate(pool.map(_entry_from_file, work, chunksize=64), 1):
            out.append(entry)
            if i % step == 0 or i == len(work):
                progress(f"Read {i}/{len(work)} packages")
    return out


class _Current:
    """The published database: as indexed chunks (fast path) or as all its entries."""

    def __init__(self, paths: RepoPaths, opts: UpdateOptions, progress: Progress) -> None:
        self.paths = paths
        self._progress = progress
        self.files_filled: list[str] = []
        self.files_missing: list[str] = []
        self.chunks: list[chunked.Chunk] | None = None
        self._entries: dict[str, Entry] | None = None
        self._blobs: dict[str, bytes] = {}
        db = paths.archive("db")
        if not db.exists():
            self._entries = {}
            self.chunks = [] if paths.compression in chunked.CHUNKABLE else None
            return
        if opts.verify_existing:
            sig = db.with_name(db.name + ".sig")
            if sig.exists():
                progress("Verifying database signature...")
                gpg_verify(db, sig, opts.gnupghome)
            else:
                progress("No existing signature found, skipping verification.")
        self._blobs["db"] = read_blob(db)
        files = paths.archive("files")
        if files.exists():
            self._blobs["files"] = read_blob(files)
        index = paths.current / paths.index_name
        if paths.compression in chunked.CHUNKABLE and "files" in self._blobs and index.exists():
            try:
                doc = json.loads(read_limited(index, MAX_INDEX_BYTES, "index"))
            except (ReposealError, ValueError):
                doc = None  # an unreadable index only costs speed
            self.chunks = chunked.chunks_from_index(doc, paths.compression, self._blobs)
        if self.chunks is None:
            progress(f"Reading all of {db.name} (no valid index: first update by reposeal)...")

    def say(self, message: str) -> None:
        self._progress(message)

    def where(self) -> dict[str, str]:
        return {p: str(self.paths.archive(p)) for p in ("db", "files")}

    def all_entries(self) -> dict[str, Entry]:
        if self._entries is None:
            db_tar = decompress_blob(self._blobs["db"], self.paths.archive("db"))
            files_tar = None
            if "files" in self._blobs:
                files_tar = decompress_blob(self._blobs["files"], self.paths.archive("files"))
            entries = entries_from_tars(
                db_tar, files_tar, self.paths.archive("db"), self.paths.archive("files")
            )
            self._entries = self._fill_files(entries)
        return self._entries

    def _fill_files(self, entries: dict[str, Entry]) -> dict[str, Entry]:
        """A files database lacking entries (repo-add makes one holding only the packages it
        adds when none was there): fill each missing one from its package file beside the
        database, if that file is there and is the one the entry names (sha256)."""
        import dataclasses

        from reposeal.alpm.desc import render_files, single

        self.files_filled, self.files_missing = [], []
        for name, e in sorted(entries.items()):
            if e.files is not None:
                continue
            where = f"entry {e.dirname}"
            fields = e.fields()
            path = self.paths.directory / single(fields, "FILENAME", where)
            try:
                pkg = read_package(path) if path.is_file() else None
            except ReposealError:
                pkg = None
            if pkg is None or pkg.facts.sha256 != single(fields, "SHA256SUM", where):
                self.files_missing.append(name)
                continue
            entries[name] = dataclasses.replace(e, files=render_files(pkg.files), raw_files=None)
            self.files_filled.append(name)
        if self.files_filled or self.files_missing:
            self._progress(
                f"the files database lacked {len(self.files_filled) + len(self.files_missing)} "
                f"entries: {len(self.files_filled)} filled from the package files beside it"
                + (
                    f"; still without a files entry (no matching package file): "
                    f"{', '.join(self.files_missing[:10])}"
                    + (" ..." if len(self.files_missing) > 10 else "")
                    if self.files_missing
                    else ""
                )
            )
        return entries


def _apply(
    current: _Current,
    names: Sequence[str],
    decide: Callable[[Mapping[str, Entry]], Plan],
) -> tuple[Plan, Callable[[], list[chunked.Chunk] | None]]:
    """Run the pure planner over just the entries it needs; return the plan and a builder
    of the new chunk list (None when the archive cannot be chunked)."""
    kind = current.paths.compression
    if current.chunks is not None and current.chunks:
        chunks = current.chunks
        touched = chunked.affected(chunks, names)
        try:
            subset = chunked.read_chunks([chunks[i] for i in touched], kind, current.where())
        except ReposealError as exc:  # an index that lies (say, about a chunk's entries)
            current.chunks = None
            current.say(f"{exc.message}: reading all of the database instead")
        else:
            plan = decide(subset)
            return plan, lambda: chunked.rechunk(chunks, touched, plan.entries.values(), kind)
    plan = decide(current.all_entries())
    if kind in chunked.CHUNKABLE:
        return plan, lambda: chunked.make_chunks(plan.entries.values(), kind)
    return plan, lambda: None


def _write(
    paths: RepoPaths,
    plan: Plan,
    chunks: list[chunked.Chunk] | None,
    opts: UpdateOptions,
    progress: Progress,
    staged: dict[str, bytes] | None = None,
) -> str:
    """Render and publish the new archives; with ``staged``, render them into it instead
    (someone else signs them and publishes them later)."""
    progress(f"Creating updated database file '{paths.archive('db')}'")
    kind = paths.compression
    files: dict[str, bytes] = {}
    for part in ("db", "files"):
        name = paths.archive_name(part)
        if chunks is not None:
            files[name] = chunked.assemble(chunks, part, kind)
        else:
            files[name] = render_archive(plan.entries.values(), part == "files", kind)
    if chunks is not None:
        doc = chunked.index_document(
            chunks, kind, {p: files[paths.archive_name(p)] for p in ("db", "files")}
        )
        files[paths.index_name] = json.dumps(doc, separators=(",", ":")).encode()
    if staged is not None:
        staged.update(files)
        return ""
    return _sign_and_publish(paths, files, opts, progress)


def _sign_and_publish(
    paths: RepoPaths, files: dict[str, bytes], opts: UpdateOptions, progress: Progress
) -> str:
    """Sign (gpg works while the archives are being written) and publish one generation."""
    signing = _start_signing(paths, files, opts, progress)
    signed_with: list[SignOptions | None] = []

    def signatures() -> dict[str, bytes]:
        sigs, options = signing()
        signed_with.append(options)
        return sigs

    generation = publish(paths, files, keep=keep_generations(paths), later=signatures)
    _remember_signing(paths, opts, signed_with[0] if signed_with else None)
    return generation


def _kept_expiry(paths: RepoPaths, opts: UpdateOptions, progress: Progress) -> SignOptions:
    """The signature options to sign with: as given, or, when no expiry is given, the
    lifetime the repository remembers, or that of its current signature (an update or a
    refresh must not quietly make an expiring repository's signature eternal)."""
    if opts.sign_options.expires_in is not None:
        return opts.sign_options
    life = _remembered_signing(paths).get("expires_in")
    if not isinstance(life, int) or isinstance(life, bool) or life <= 0:
        life = _current_lifetime(paths)
    if life is None:
        return opts.sign_options
    progress(f"the signatures expire after {life} s, as before (--sig-expires changes it)")
    return dataclasses.replace(opts.sign_options, expires_in=life)


def _current_lifetime(paths: RepoPaths) -> int | None:
    import pysequoia

    sig = paths.directory / (paths.archive_name("db") + ".sig")
    try:
        current = pysequoia.Sig.from_bytes(sig.read_bytes())
    except (OSError, RuntimeError, ValueError):
        return None
    if current.expiration is None or current.created is None:
        return None
    return int((current.expiration - current.created).total_seconds())


def _start_signing(
    paths: RepoPaths, files: dict[str, bytes], opts: UpdateOptions, progress: Progress
) -> Callable[[], tuple[dict[str, bytes], SignOptions | None]]:
    """Start signing each archive in ``files`` (when a signer is set; with gpg, both at once,
    in the background); the returned call waits and gives the signatures, each verified, and
    the options they were made with."""
    if opts.signer is None:
        return lambda: ({}, None)
    from reposeal.openpgp.verify import Keyring, verify_detached

    signer = opts.signer
    options = _kept_expiry(paths, opts, progress)
    keyring = Keyring.from_bytes(signer.certificate())
    names = [paths.archive_name(p) for p in ("db", "files") if paths.archive_name(p) in files]

    def sign(name: str) -> bytes:
        sig = signer.sign_detached(io.BytesIO(files[name]), options)
        try:  # never publish a signature we cannot verify ourselves
            verify_detached(files[name], sig, keyring)
        except ReposealError as exc:
            raise SigningError(
                f"the new signature of {name} does not verify ({exc.message}); "
                "nothing was published"
            ) from None
        return sig

    progress(f"Signing database {' and '.join(repr(n) for n in names)}...")
    if getattr(signer, "concurrent", False):
        done = _start_threads(sign, names)
    else:

        def done() -> list[bytes]:
            return [sign(n) for n in names]

    def finish() -> tuple[dict[str, bytes], SignOptions | None]:
        sigs = done()
        return {f"{n}.sig": sig for n, sig in zip(names, sigs, strict=True)}, options

    return finish


def _start_threads(work: Callable[[str], bytes], items: Sequence[str]) -> Callable[[], list[bytes]]:
    """Start ``work(i)`` for each of ``items``, each in its own thread (plain threads: the
    executor module costs more to import than a short job saves); the returned call waits
    and gives the results in order, or raises the first error."""
    import threading

    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(items[i])
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(items))]
    for t in threads:
        t.start()

    def join() -> list[bytes]:
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return [results[i] for i in range(len(items))]

    return join


def _remembered_signing(paths: RepoPaths) -> dict[str, Any]:
    doc = settings(paths).get("signing")
    return doc if isinstance(doc, dict) else {}


def _sign_as_remembered(paths: RepoPaths, opts: UpdateOptions, progress: Progress) -> UpdateOptions:
    """No signer given: sign the way the repository remembers (key and expiry), so a tool
    that calls plain repo-add keeps a signed repository signed. ``--unsigned`` does not."""
    if opts.signer is not None or opts.unsigned:
        return opts
    spec = _remembered_signing(paths).get("signer")
    if not isinstance(spec, str) or not spec:
        return opts
    from reposeal.openpgp.spec import signer_from_spec

    where = f"{paths.name}.{SETTINGS}"
    try:
        signer = signer_from_spec(spec, opts.gnupghome)
        signer.fingerprint  # noqa: B018 (the key must be usable before anything is read)
    except ReposealError as exc:
        raise SigningError(
            f"this repository is signed with {spec} (it says so in {where}), which cannot "
            f"sign here: {exc.message}. Give -s -k KEY or --signer SPEC (with --new-key for "
            "another key), or --unsigned to publish it unsigned"
        ) from None
    progress(f"signing with {spec}, as this repository is signed ({where})")
    return dataclasses.replace(opts, signer=signer, signer_spec=spec)


def _spec_to_remember(opts: UpdateOptions) -> str | None:
    """The signer's spec as it names the same key anywhere: a gpg key by fingerprint (and
    its GnuPG home, when one was named), a key file by absolute path."""
    spec, signer = opts.signer_spec, opts.signer
    if not spec or signer is None:
        return None
    from reposeal.openpgp.spec import SignerSpec

    parsed = SignerSpec.parse(spec, opts.gnupghome)
    if parsed.backend == "gpg":  # in the GnuPG home it was found in (if one was named)
        home = parsed.gnupghome.resolve() if parsed.gnupghome else None
        return str(SignerSpec("gpg", signer.fingerprint.upper(), home))
    if parsed.backend == "soft":
        return f"soft:{Path(parsed.target).resolve()}"
    return spec


def _remember_signing(
    paths: RepoPaths, opts: UpdateOptions, signed_with: SignOptions | None
) -> None:
    """Keep how the repository was just signed in its settings (only when there is something
    to keep: a repository that was never signed gets no settings file)."""
    doc = settings(paths)
    if opts.signer is None:
        want: dict[str, Any] | None = None
        if not doc.get("signing"):
            return
    else:
        spec = _spec_to_remember(opts)
        if spec is None:
            return
        want = {
            "signer": spec,
            "fingerprint": opts.signer.fingerprint.upper(),
            "expires_in": signed_with.expires_in if signed_with else None,
        }
    if doc.get("signing") != want:
        doc["signing"] = want
        save_settings(paths, doc)


def _keep_signed(paths: RepoPaths, opts: UpdateOptions, progress: Progress) -> None:
    """A signed repository stays signed, by the same key: an update without a signer would
    publish it unsigned (pacman then refuses it: "missing required signature") and another
    key would need every user to trust it; both are refused unless asked for (--unsigned,
    --new-key)."""
    sig = paths.directory / (paths.archive_name("db") + ".sig")
    if not sig.exists():
        return
    if opts.signer is None:
        if opts.unsigned:
            progress(f"WARNING: {paths.archive_name('db')} was signed; it is published unsigned")
            return
        raise InputError(
            f"{paths.archive_name('db')} is signed: give -s (and -k KEY, or --signer SPEC) to "
            "keep it signed, or --unsigned to publish it unsigned"
        )
    import pysequoia

    try:
        issuer = (pysequoia.Sig.from_bytes(sig.read_bytes()).issuer_fingerprint or "").upper()
    except (RuntimeError, ValueError, OSError):
        return
    from reposeal.openpgp.packets import key_fingerprints

    ours = key_fingerprints(opts.signer.certificate()) | {opts.signer.fingerprint.upper()}
    if issuer and issuer not in ours:  # (a signature names the subkey that made it)
        if not opts.new_key:
            raise InputError(
                f"{paths.archive_name('db')} is signed by {issuer}, not by "
                f"{opts.signer.fingerprint.upper()}: give --new-key to switch keys (pacman "
                "users must trust the new one first)"
            )
        progress(
            f"WARNING: the database was signed by {issuer}; it is now signed by "
            f"{opts.signer.fingerprint.upper()} instead: pacman users must trust that key"
        )


def _update(
    db_path: Path,
    names: Sequence[str],
    decide: Callable[[Mapping[str, Entry]], Plan],
    opts: UpdateOptions,
    progress: Progress,
    *,
    create: bool,
    new_files: Callable[[], Sequence[Entry]] | None = None,
    staged: dict[str, bytes] | None = None,
) -> tuple[Report, Plan]:
    paths = RepoPaths.from_db_path(db_path)
    if staged is None:  # (staged: someone else signs, the enclave)
        opts = _sign_as_remembered(paths, opts, progress)
    signer_fpr = opts.signer.fingerprint if opts.signer is not None else None  # fail early
    with database_lock(paths.lock, wait=opts.wait):
        if not create and not paths.archive("db").exists():
            raise InvalidDatabaseError("repository file was not found", path=paths.archive("db"))
        current = _Current(paths, opts, progress)
        plan, build_chunks = _apply(current, names, decide)
        if plan.refusals:
            raise RefusedError(plan.refusals, path=paths.archive("db"))
        report = Report(
            database=str(paths.archive("db")),
            added=plan.added,
            upgraded=plan.upgraded,
            downgraded=plan.downgraded,
            removed=plan.removed,
            refreshed=plan.refreshed,
            rebuilt=plan.rebuilt,
            skipped=plan.skipped,
            signed_by=signer_fpr,
            files_filled=current.files_filled,
            files_missing=current.files_missing,
        )
        if plan.changed or not paths.archive("db").exists():
            _keep_signed(paths, opts, progress)
            chunks = build_chunks()
            report.generation = _write(paths, plan, chunks, opts, progress, staged) or None
            report.packages = (
                sum(c.count for c in chunks) if chunks is not None else len(plan.entries)
            )
        else:
            progress("No packages modified, nothing to do.")
            report.packages = (
                sum(c.count for c in current.chunks)
                if current.chunks is not None
                else len(current.all_entries())
            )
        return report, plan


SETTINGS = "reposeal.json"  # NAME.reposeal.json beside the database: the repository's settings


# settings files read, by path: (inode, mtime, size) and the document (one update asks
# for several settings; the file is read and parsed again only when it changed)
_SETTINGS_READ: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def settings(paths: RepoPaths) -> dict[str, Any]:
    """The repository's own settings (e.g. ``replace_same_version`` for a personal one)."""
    path = paths.directory / f"{paths.name}.{SETTINGS}"
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    seen = _SETTINGS_READ.get(path)
    if seen is not None and seen[0] == stamp:
        return copy.deepcopy(seen[1])
    try:
        doc = json.loads(read_limited(path, 64 << 10, "repository settings"))
    except ValueError:
        raise InputError("is not JSON: fix or remove it", path=path) from None
    if not isinstance(doc, dict):
        raise InputError("must be a JSON object", path=path)
    _SETTINGS_READ[path] = (stamp, doc)
    return copy.deepcopy(doc)


def save_settings(paths: RepoPaths, doc: dict[str, Any]) -> None:
    from reposeal.fsio import atomic_write

    path = paths.directory / f"{paths.name}.{SETTINGS}"
    atomic_write(path, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    _SETTINGS_READ.pop(path, None)


def add(db_path: Path, packages: Sequence[Path], opts: UpdateOptions, progress: Progress) -> Report:
    """Add (or update) packages; all or nothing."""
    paths = RepoPaths.from_db_path(db_path)  # a bad path fails before packages are read
    if settings(paths).get("replace_same_version") is True and not opts.rules.replace_same_version:
        opts = dataclasses.replace(
            opts, rules=dataclasses.replace(opts.rules, replace_same_version=True)
        )
    new = read_package_entries(packages, opts.include_sigs, opts.jobs, progress)
    report, plan = _update(
        db_path,
        [e.name for e in new],
        lambda cur: plan_add(cur, new, opts.rules),
        opts,
        progress,
        create=True,
    )
    if opts.remove_old_files and report.generation:
        for dirpath in {p.parent for p in packages}:
            for old in plan.replaced_files:
                for f in (dirpath / old, dirpath / (old + ".sig")):
                    if f.exists():
                        progress(f"Removing old package file '{f.name}'")
                        f.unlink()
                        report.deleted_files.append(str(f))
    return report


def stage_add(
    db_path: Path,
    packages: Sequence[Path],
    opts: UpdateOptions,
    progress: Progress,
    remove: Sequence[str] = (),
) -> tuple[Report, dict[str, bytes]]:
    """What adding ``packages`` (and removing the packages named in ``remove``) would
    publish (archive name -> bytes, unsigned), without publishing: for a signer elsewhere
    (the enclave). Publish it with ``publish_staged``."""
    RepoPaths.from_db_path(db_path)
    new = read_package_entries(packages, opts.include_sigs, opts.jobs, progress)

    def plan(cur: Mapping[str, Entry]) -> Plan:
        added = plan_add(cur, new, opts.rules)
        if not remove or added.refusals:
            return added
        removed = plan_remove(added.entries, remove)
        removed.added, removed.upgraded = added.added, added.upgraded
        removed.refusals = added.refusals + removed.refusals
        removed.replaced_files = added.replaced_files + [
            filename_of(added.entries[n]) for n in remove if n in added.entries
        ]
        return removed

    staged: dict[str, bytes] = {}
    names = [e.name for e in new] + list(remove)
    report, done = _update(db_path, names, plan, opts, progress, create=True, staged=staged)
    report.superseded = list(done.replaced_files)
    return report, staged


def publish_staged(db_path: Path, files: dict[str, bytes], wait: float = 0.0) -> str:
    """Publish archives (and their signatures) staged by ``stage_add``, atomically."""
    paths = RepoPaths.from_db_path(db_path)
    with database_lock(paths.lock, wait=wait):
        return publish(paths, files)


def remove(db_path: Path, names: Sequence[str], opts: UpdateOptions, progress: Progress) -> Report:
    """Remove packages by name; all or nothing."""
    report, _ = _update(
        db_path, names, lambda cur: plan_remove(cur, names), opts, progress, create=False
    )
    return report


def refresh(db_path: Path, opts: UpdateOptions, progress: Progress) -> Report:
    """Re-sign the current databases as they are (e.g. with a new expiry) and publish the
    same archives with the new signatures as a new generation."""
    paths = RepoPaths.from_db_path(db_path)
    opts = _sign_as_remembered(paths, opts, progress)
    if opts.signer is None:
        raise SigningError(
            "refresh needs a signer (--signer or --sign): this repository does not say how "
            "it is signed"
        )
    signer_fpr = opts.signer.fingerprint
    with database_lock(paths.lock, wait=opts.wait):
        db = paths.archive("db")
        if not db.exists():
            raise InvalidDatabaseError("repository file was not found", path=db)
        _keep_signed(paths, opts, progress)
        current = _Current(paths, opts, progress)
        entries = current.all_entries()  # a database we re-sign must parse completely
        problems = validate_entries(entries)
        if problems:
            raise InvalidDatabaseError("refusing to re-sign: " + "; ".join(problems[:5]), path=db)
        files = {
            paths.archive_name(p): read_blob(paths.archive(p))
            for p in ("db", "files")
            if paths.archive(p).exists()
        }
        index = paths.current / paths.index_name
        if index.exists():
            files[paths.index_name] = read_limited(index, MAX_INDEX_BYTES, "index")
        report = Report(database=str(db), signed_by=signer_fpr, packages=len(entries))
        report.generation = _sign_and_publish(paths, files, opts, progress)
        return report


def generations(db_path: Path) -> tuple[list[str], str | None]:
    """The generations kept on disk (oldest first) and the current one."""
    from reposeal.repo.publish import generation_numbers

    paths = RepoPaths.from_db_path(db_path)
    current = os.path.basename(os.readlink(paths.current)) if paths.current.is_symlink() else None
    return [f"{n:06d}" for n in generation_numbers(paths)], current


def rollback(
    db_path: Path,
    opts: UpdateOptions,
    progress: Progress,
    to: str | None = None,
    *,
    allow_downgrade: bool = False,
) -> Report:
    """Publish an earlier generation's databases again, as a new generation (so pacman,
    which skips a database no newer than its copy, fetches it). Lowering any package's
    version needs ``allow_downgrade``; signed again when a signer is given or remembered,
    otherwise with the earlier generation's own signatures, if they still hold."""
    from reposeal.alpm.vercmp import vercmp

    paths = RepoPaths.from_db_path(db_path)
    opts = _sign_as_remembered(paths, opts, progress)
    with database_lock(paths.lock, wait=opts.wait):
        kept, current = generations(db_path)
        if current is None or current not in kept:
            raise InputError("has no generations to roll back to", path=paths.archive("db"))
        earlier = [g for g in kept if g < current]
        target = to.zfill(6) if to else (earlier[-1] if earlier else None)
        if target is None or target not in earlier:
            raise InputError(
                f"no earlier generation {to or ''} is kept (kept: {', '.join(kept)}; current: "
                f"{current})".replace("  ", " "),
                path=paths.generations,
            )
        folder = paths.generations / target
        progress(f"Rolling back to generation {target} (current: {current})...")
        now = read_entries(paths.archive("db"), paths.archive("files"))
        then = read_entries(folder / paths.archive_name("db"), folder / paths.archive_name("files"))
        problems = validate_entries(then)
        if problems:
            raise InvalidDatabaseError("; ".join(problems[:5]), path=folder)
        report = Report(database=str(paths.archive("db")), packages=len(then))
        for name in sorted(set(now) | set(then)):
            old, new = now.get(name), then.get(name)
            if old is None and new is not None:
                report.added.append(f"{name} {new.version}")
            elif new is None and old is not None:
                report.removed.append(f"{name} {old.version}")
            elif old is not None and new is not None and old.version != new.version:
                order = vercmp(new.version, old.version)
                where = report.downgraded if order < 0 else report.upgraded
                where.append(f"{name} {old.version} -> {new.version}")
        if report.downgraded and not allow_downgrade:
            raise RefusedError(
                [f"{d}: a downgrade (give --allow-downgrade)" for d in report.downgraded],
                path=paths.archive("db"),
            )
        files = {
            paths.archive_name(p): read_blob(folder / paths.archive_name(p))
            for p in ("db", "files")
            if (folder / paths.archive_name(p)).is_file()
        }
        if (folder / paths.index_name).is_file():
            files[paths.index_name] = read_limited(
                folder / paths.index_name, MAX_INDEX_BYTES, "index"
            )
        if opts.signer is not None:
            _keep_signed(paths, opts, progress)
            report.signed_by = opts.signer.fingerprint
            report.generation = _sign_and_publish(paths, files, opts, progress)
            return report
        for name in list(files):
            if (folder / (name + ".sig")).is_file():
                sig = read_limited(folder / (name + ".sig"), 16384, "signature")
                _refuse_expired(sig, name, target)
                files[name + ".sig"] = sig
        if paths.archive_name("db") + ".sig" not in files:
            _keep_signed(paths, opts, progress)  # a signed repository: refused or --unsigned
        else:
            progress(f"keeping generation {target}'s own signatures (give -s to sign anew)")
        report.generation = publish(paths, files, keep=keep_generations(paths))
        return report


def _refuse_expired(sig: bytes, name: str, generation: str) -> None:
    """pacman refuses an expired database signature: publishing one would break every
    client, so it is refused here, saying how to sign anew."""
    import datetime

    import pysequoia

    try:
        expires = pysequoia.Sig.from_bytes(sig).expiration
    except (RuntimeError, ValueError):
        raise InvalidDatabaseError(
            f"generation {generation}'s signature of {name} does not parse"
        ) from None
    if expires is not None and expires <= datetime.datetime.now(datetime.UTC):
        raise SigningError(
            f"generation {generation}'s signature of {name} expired at {expires:%Y-%m-%d %H:%M} "
            "UTC: give -s -k KEY or --signer SPEC to sign it anew"
        )


def keep_generations(paths: RepoPaths) -> int:
    """How many generations stay on disk (``db settings --keep-generations``; 2 by default:
    the current one and the one before, as repo-add keeps .old)."""
    from reposeal.repo.publish import KEEP_GENERATIONS

    n = settings(paths).get("keep_generations")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 2 else KEEP_GENERATIONS


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
    db_path: Path,
    gnupghome: Path | None,
    allow_unsigned: bool,
    progress: Progress,
    keyring: Path | None = None,
    *,
    packages: bool = True,
) -> VerifyReport:
    """Check signatures and every entry of the sync and files databases (index ignored),
    and, with ``packages``, each listed package file beside the database against its entry
    (its bytes give the very ``desc`` and file list the databases hold)."""
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
            if keyring is not None:
                from reposeal.openpgp.verify import Keyring, verify_detached

                sig_bytes = read_limited(sig, 16384, "signature")
                try:
                    signatures[archive.name] = verify_detached(
                        archive, sig_bytes, Keyring.from_file(keyring)
                    )
                except ReposealError as exc:
                    raise exc.at(archive) from None
            else:
                signatures[archive.name] = gpg_verify(archive, sig, gnupghome).fingerprint
        else:
            signatures[archive.name] = "unsigned"
            if not allow_unsigned:
                problems.append(f"{archive.name} has no signature ({sig.name} is missing)")
    progress(f"Checking every entry of {db.name}...")
    entries = read_entries(db, paths.archive("files"))
    problems += validate_entries(entries)
    if packages and not problems:
        progress("Checking the package files beside the database...")
        problems += package_problems(paths.directory, entries)
    return VerifyReport(str(db), len(entries), signatures, problems)


def package_problems(folder: Path, entries: Mapping[str, Entry]) -> list[str]:
    """How the package files in ``folder`` differ from the entries that list them: missing,
    another file (sha256), or bytes that give another ``desc`` or file list."""
    import dataclasses

    from reposeal.alpm.desc import single

    problems = []
    for name, e in sorted(entries.items()):
        where = f"entry {e.dirname}"
        fields = e.fields()
        filename = single(fields, "FILENAME", where)
        path = folder / filename
        if not path.is_file():
            problems.append(f"{name}: its package file {filename} is not beside the database")
            continue
        try:
            pkg = read_package(path)
        except ReposealError as exc:
            problems.append(f"{name}: its package file does not read: {exc.message}")
            continue
        if pkg.facts.sha256 != single(fields, "SHA256SUM", where):
            problems.append(f"{name}: {filename} is another file than its entry describes")
            continue
        sig = fields.get("PGPSIG", [""])[0] if fields.get("PGPSIG") else ""
        derived = Entry.from_package(dataclasses.replace(pkg.facts, pgpsig=sig), pkg.files)
        if derived.desc != e.desc:
            problems.append(f"{name}: its entry says other things than {filename} does")
        elif e.files is not None and derived.files != e.files:
            problems.append(f"{name}: its files entry lists other files than {filename} holds")
    return problems
