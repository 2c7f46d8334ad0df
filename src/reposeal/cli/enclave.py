"""`reposeal enclave`: the signing machine's commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from reposeal.cli import EXIT_CODES, _Out, main
from reposeal.cli.adopt import ADOPTED_PACKAGES, ADOPTION_STATEMENT, PACKAGERS_KEYRING
from reposeal.cli.config import service_options
from reposeal.cli.documents import GNUPGHOME_OPTION
from reposeal.errors import InputError, ReposealError

if TYPE_CHECKING:
    from reposeal.enclave.proposal import Proposal
    from reposeal.protocol.answers import JobResult

_HOME = click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The enclave's home folder.",
)


def _answer(result: JobResult) -> NoReturn:
    """Print a job's receipt as JSON (without the database bytes); exit 0 if signed, 3 if
    refused."""
    receipt = result.to_json()
    if "databases" in receipt:
        for key in ("index", "chunks"):
            receipt["databases"].pop(key, None)
    click.echo(json.dumps(receipt, indent=2))
    sys.exit(0 if result.decision == "accept" else 3)


@main.group()
def enclave() -> None:
    """The enclave: re-derives every fact from the bytes, decides by policy, signs, logs."""


@enclave.command("init", epilog=EXIT_CODES)
@_HOME
@click.option("--signer", "spec", required=True, metavar="SPEC")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--origin",
    default="reposeal.local/log",
    show_default=True,
    help="The log's name in its checkpoints.",
)
@GNUPGHOME_OPTION
def enclave_init(
    home: Path, spec: str, policy_path: Path, origin: str, gnupghome: Path | None
) -> None:
    """Create the home: check the first policy (its admin threshold) and the key, and write
    the genesis entry of the transparency log."""
    from reposeal.enclave.home import init_home

    out = _Out(False, False)
    try:
        h = init_home(home, spec, policy_path, origin, gnupghome)
        fpr = h.signer().fingerprint
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"enclave home {home} ready; signing key {fpr}")


def _proposal_options(f: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--repo", required=True),
        click.option("--arch", required=True),
        click.option(
            "--add",
            "adds",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A package file to add (its evidence in --evidence); repeatable.",
        ),
        click.option(
            "--move",
            "moves",
            multiple=True,
            metavar="FROM=FILE",
            help="A package file moving up from the layer FROM, which holds it; repeatable.",
        ),
        click.option("--remove", "removes", multiple=True, help="A package name to remove."),
        click.option("--evidence", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.option(
            "--compression",
            type=click.Choice([".gz", ".zst"]),
            default=".gz",
            show_default=True,
            help="How the databases are compressed (a repository keeps its first choice).",
        ),
        click.option("--insecure-no-sandbox", is_flag=True, help="Run the worker unsandboxed."),
    ]

    @functools.wraps(f)
    def command(**params: Any) -> None:
        fields = ("repo", "arch", "adds", "moves", "removes", "evidence", "compression",
                  "insecure_no_sandbox")  # fmt: skip
        f(proposed=_Proposed(**{k: params.pop(k) for k in fields}), **params)

    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True)
class _Proposed:
    """A transition as the command line describes it (``_proposal_options``)."""

    repo: str
    arch: str
    adds: tuple[Path, ...]
    moves: tuple[str, ...]
    removes: tuple[str, ...]
    evidence: Path | None
    compression: str
    insecure_no_sandbox: bool

    def proposal(self, parent: str | None = None) -> tuple[Proposal, Path]:
        """The proposal, and the one folder its package files are in."""
        return _proposal(self, parent)


def _proposal(given: _Proposed, parent: str | None) -> tuple[Proposal, Path]:
    from reposeal.enclave.proposal import UNSET, Proposal

    repo, arch, adds, removes = given.repo, given.arch, given.adds, given.removes
    compression = given.compression
    moved: list[tuple[str, Path]] = []
    for item in given.moves:
        layer, sep, file = item.partition("=")
        if not sep or not layer or not file:
            raise click.UsageError(f"--move {item!r}: name it as FROM=FILE")
        moved.append((layer, Path(file)))
    files = [*adds, *(p for _, p in moved)]
    folders = {p.resolve().parent for p in files}
    if len(folders) > 1:
        raise click.UsageError("every package file of one transition must be in one folder")
    folder = folders.pop() if folders else Path.cwd()
    return (
        Proposal(
            repo,
            arch,
            add=tuple(p.name for p in adds),
            moves=tuple((p.name, layer) for layer, p in moved),
            remove=removes,
            parent=UNSET if parent is None else (None if parent == "none" else parent),
            compression=compression,
        ),
        folder,
    )


@enclave.command("dry-run", epilog=EXIT_CODES)
@_HOME
@_proposal_options
def enclave_dry_run(home: Path, proposed: _Proposed) -> None:
    """Would the enclave sign this transition of REPO/ARCH (from the databases it signed
    last)? Runs the sandboxed worker without a key or the log. Prints {"decision": ...,
    "reasons": [...]}; exit 0 accept, 3 refuse."""
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.jobs import dry_run

    out = _Out(False, True)
    proposal, folder = proposed.proposal()
    try:
        result = dry_run(
            EnclaveHome(home),
            proposal,
            folder,
            evidence=proposed.evidence,
            insecure_no_sandbox=proposed.insecure_no_sandbox,
        )
    except ReposealError as exc:
        out.fail(exc)
    click.echo(json.dumps(result, indent=2))
    sys.exit(0 if result.get("decision") == "accept" else 3)


@enclave.command("propose", epilog=EXIT_CODES)
@_HOME
@click.option(
    "--job-id", required=True, help="Unique per request; a retry returns the same answer."
)
@_proposal_options
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the new databases and their signatures.",
)
@GNUPGHOME_OPTION
@click.option(
    "--parent",
    help="sha256 of the database this one replaces ('none' for the first);"
    " refused if it is not the last one signed.",
)
def enclave_propose(
    home: Path,
    job_id: str,
    proposed: _Proposed,
    output: Path,
    gnupghome: Path | None,
    parent: str | None,
) -> None:
    """Propose a transition of REPO/ARCH: the enclave reads the package files and evidence
    in its sandbox, writes the next sync and files databases itself (from the ones it signed
    last), reads them back with libalpm and libarchive, signs them and logs the decision.
    Writes REPO.db.tar.EXT, REPO.files.tar.EXT and their .sig into OUTPUT; exit 0 signed,
    3 refused."""
    from reposeal.enclave.answers import write_signed_databases
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.jobs import propose

    out = _Out(False, True)
    proposal, folder = proposed.proposal(parent)
    try:
        h = EnclaveHome(home, gnupghome)
        result = propose(
            h,
            job_id,
            proposal,
            folder,
            evidence=proposed.evidence,
            insecure_no_sandbox=proposed.insecure_no_sandbox,
        )
        write_signed_databases(h, result, proposed.repo, output)
    except ReposealError as exc:
        out.fail(exc)
    _answer(result)


@enclave.command("adopt", epilog=EXIT_CODES)
@_HOME
@click.option(
    "--job-id", required=True, help="Unique per request; a retry returns the same answer."
)
@click.option("--repo", required=True)
@click.option("--arch", required=True)
@ADOPTION_STATEMENT
@ADOPTED_PACKAGES
@PACKAGERS_KEYRING
@click.option("--compression", type=click.Choice([".gz", ".zst"]), default=".gz", show_default=True)
@click.option("--insecure-no-sandbox", is_flag=True, help="Tests only: no bubblewrap.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the first databases and their signatures.")  # fmt: skip
@GNUPGHOME_OPTION
def enclave_adopt(
    home: Path,
    job_id: str,
    repo: str,
    arch: str,
    statement: Path,
    packages: Path,
    keyring: Path | None,
    compression: str,
    insecure_no_sandbox: bool,
    output: Path,
    gnupghome: Path | None,
) -> None:
    """Adopt an existing repository as REPO/ARCH's starting point: the enclave reads every
    package file the admin-signed adoption statement names, checks its sha256 (and, with
    the keyring it names, its packager signature), writes and signs the first sync and files
    databases, and logs the adoption. A repository the enclave ever signed is refused.
    Exit 0 signed, 3 refused."""
    import shutil
    import tempfile

    from reposeal.enclave.answers import write_signed_databases
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.jobs import propose
    from reposeal.enclave.proposal import Proposal
    from reposeal.evidence.statements import Adoption, from_bytes

    out = _Out(False, True)
    try:
        raw = statement.read_bytes()
        stmt = from_bytes(raw)
        if not isinstance(stmt, Adoption):
            raise InputError(f"{statement} is a {stmt.kind} statement, not an adoption")
        with tempfile.TemporaryDirectory(prefix="reposeal-adopt-") as tmp:
            evidence = Path(tmp)
            shutil.copy(statement, evidence / "adoption.json")
            sig = statement.with_name(statement.name + ".sig")
            if sig.exists():
                shutil.copy(sig, evidence / "adoption.json.sig")
            proposal = Proposal(repo, arch, add=tuple(f for f, _ in stmt.files), parent=None,
                                compression=compression, adopt=True)  # fmt: skip
            h = EnclaveHome(home, gnupghome)
            result = propose(
                h, job_id, proposal, packages, evidence=evidence,
                insecure_no_sandbox=insecure_no_sandbox,
                keyring=keyring.read_bytes() if keyring else None,
            )  # fmt: skip
        write_signed_databases(h, result, repo, output)
    except ReposealError as exc:
        out.fail(exc)
    except OSError as exc:
        out.fail(InputError(f"{exc.strerror or exc}: {exc.filename}"))
    _answer(result)


@enclave.command("sign-packages", epilog=EXIT_CODES)
@_HOME
@click.option("--job-id", required=True)
@click.option("--repo", required=True)
@click.option(
    "--packages", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--evidence", type=click.Path(exists=True, file_okay=False, path_type=Path))
@GNUPGHOME_OPTION
@click.option("--insecure-no-sandbox", is_flag=True)
def enclave_sign_packages(
    home: Path,
    job_id: str,
    repo: str,
    packages: Path,
    evidence: Path | None,
    gnupghome: Path | None,
    insecure_no_sandbox: bool,
) -> None:
    """Sign every package file in PACKAGES (writes FILE.sig beside each) if the policy allows;
    a file signed before gets its logged signature back. Exit 0 signed, 3 refused."""
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.jobs import sign_packages
    from reposeal.fsio import atomic_write

    out = _Out(False, True)
    try:
        result = sign_packages(
            EnclaveHome(home, gnupghome),
            job_id,
            repo,
            packages,
            evidence=evidence,
            insecure_no_sandbox=insecure_no_sandbox,
        )
        for name, sig in result.package_signatures.items():
            atomic_write(packages / f"{name}.sig", sig)
    except ReposealError as exc:
        out.fail(exc)
    _answer(result)


@enclave.command("refresh", epilog=EXIT_CODES)
@_HOME
@click.option("--job-id", required=True)
@click.option("--repo", required=True)
@click.option("--arch", required=True)
@click.option("--expect", help="sha256 of the database you hold: refused unless it is the latest.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the new signatures (REPO.db.tar.EXT.sig, REPO.files.tar.EXT.sig).",
)
@GNUPGHOME_OPTION
def enclave_refresh(
    home: Path,
    job_id: str,
    repo: str,
    arch: str,
    expect: str | None,
    output: Path,
    gnupghome: Path | None,
) -> None:
    """Re-sign the latest databases the enclave wrote for REPO/ARCH with a fresh expiry."""
    from reposeal.enclave.answers import link_like_repo_add
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.jobs import refresh_db
    from reposeal.fsio import write_all

    out = _Out(False, True)
    try:
        h = EnclaveHome(home, gnupghome)
        result = refresh_db(h, job_id, repo, arch, expect=expect)
        last = h.last_databases(repo, arch)
        if result.signature and result.files_signature and last is not None:
            ext = last.compression
            write_all(
                {
                    output / f"{repo}.db.tar{ext}.sig": result.signature,
                    output / f"{repo}.files.tar{ext}.sig": result.files_signature,
                }
            )
            link_like_repo_add(output, repo, ext)
    except ReposealError as exc:
        out.fail(exc)
    _answer(result)


@enclave.command("policy", epilog=EXIT_CODES)
@_HOME
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--job-id",
    help="Names the rotation in the log (default: policy- and the sha256 of the document and "
    "its signatures).",
)
@GNUPGHOME_OPTION
def enclave_policy(home: Path, document: Path, job_id: str | None, gnupghome: Path | None) -> None:
    """Put a new policy in force: DOCUMENT (with DOCUMENT.sig) must have a higher version
    and be signed by the admin threshold of the current policy and of its own. The rotation
    (or its refusal) is a log entry; exit 0 if in force, 3 if refused."""
    import hashlib

    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.jobs import rotate_policy
    from reposeal.evidence.files import sig_path

    out = _Out(False, True)
    try:
        signed = document.read_bytes() + b"\0" + sig_path(document).read_bytes()
        name = job_id or f"policy-{hashlib.sha256(signed).hexdigest()[:32]}"
        result = rotate_policy(EnclaveHome(home, gnupghome), name, document)
    except (ReposealError, OSError) as exc:
        out.fail(exc if isinstance(exc, ReposealError) else ReposealError(str(exc)))
    _answer(result)


@enclave.command("audit", epilog=EXIT_CODES)
@click.argument("log_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--packages",
    "mirror",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A mirror (MIRROR/REPO/os/ARCH/, MIRROR/archive/): re-read every package file a "
    "database added and re-derive its record and entries.",
)
def enclave_audit(log_dir: Path, as_json: bool, mirror: Path | None) -> None:
    """Replay LOG_DIR (an enclave home or a published copy: log.sqlite, records/, evidence/,
    policies/, dbs/, repo-key.pgp) through the policy in force at each entry (rotations are
    log entries); re-read the signed databases it holds and compare them with what the log
    says they hold; report any signature it would not have allowed. Needs no key. Exit 0 if
    every signature was allowed."""
    from reposeal.enclave.audit import audit

    out = _Out(False, as_json)
    try:
        report = audit(log_dir, mirror)
    except ReposealError as exc:
        out.fail(exc)
    doc = {
        "ok": report.ok,
        "entries": report.entries,
        "signatures": report.signatures,
        "refusals": report.refusals,
        "policy_rotations": report.rotations,
        "key_rotations": report.key_rotations,
        "violations": report.violations,
        "adoptions": report.adoptions,
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(
            f"{report.entries} entries: {report.signatures} signatures, "
            f"{report.refusals} refusals, {report.rotations} policy rotations, "
            f"{report.key_rotations} key rotations, "
            f"{len(report.violations)} violations"
        )
        for a in report.adoptions:
            click.echo(
                f"entry {a['entry']}: {a['repo']}/{a['arch']} adopted {len(a['packages'])} "
                f"packages, signed by admins {', '.join(k[-16:] for k in a['admins'])}"
            )
        for v in report.violations:
            click.echo(f"VIOLATION {v}")
    sys.exit(0 if report.ok else 3)


@enclave.command("provenance", epilog=EXIT_CODES)
@click.argument(
    "log_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the pages go (index.html); replaced whole, once the new ones are written.",
)
@click.option(
    "--from",
    "log_url",
    metavar="URL",
    help="Instead of LOG_DIR: the log on a mirror (https://MIRROR/log, or "
    "file:///srv/mirror/log on the mirror host), copied and checked first.",
)
@click.option(
    "--keyring",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --from: the repository key the log's checkpoint must be signed by.",
)
def enclave_provenance(
    log_dir: Path | None, output: Path, log_url: str | None, keyring: Path | None
) -> None:
    """Public provenance pages for a log (an enclave home, an auditor's copy from
    `enclave restore --keyring`, or with --from and --keyring a mirror's log): every signed
    database, what it added and on whose word (the maintainers who approved, with the
    PKGBUILD change they approved when its text is kept; the builders who attested), what
    it removed, and the repositories adopted and by which admins. The log is audited
    first; violations are shown at the top, and the exit code is 3 if there are any."""
    from reposeal.enclave.provenance_site import pages_from_mirror, pages_of, write_site

    out = _Out(False, False)
    if (log_dir is None) == (log_url is None) or (log_url is not None and keyring is None):
        raise click.UsageError("give LOG_DIR, or --from URL with --keyring")
    try:
        if log_url is not None and keyring is not None:
            scratch = output.parent
            pages, report = pages_from_mirror(log_url, keyring.read_bytes(), scratch)
        else:
            assert log_dir is not None
            pages, report = pages_of(log_dir)
        write_site(pages, output)
    except ReposealError as exc:
        out.fail(exc)
    click.echo(
        f"wrote {output / 'index.html'} (and packages.html, maintainers.html, proofs/, "
        f"pkgbuilds/): {len(report.provenance)} signed databases"
    )
    if report.violations:
        sys.exit(3)


@enclave.command("run", epilog=EXIT_CODES)
@service_options("enclave")
@_HOME
@click.option("--bridge", "url", required=True, help="https://HOST:PORT of the bridge.")
@click.option(
    "--cert",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="This enclave's client certificate (role enclave).",
)
@click.option("--key", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--ca",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="The only CA trusted for the bridge's certificate (pinned).",
)
@click.option("--once", is_flag=True, help="Serve until the queue is empty, then exit.")
@click.option("--wait", type=click.FloatRange(0, 60), default=30.0, show_default=True)
@GNUPGHOME_OPTION
@click.option("--insecure-no-sandbox", is_flag=True, help="Run workers without bubblewrap.")
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep Prometheus metrics in this file after every job, for node_exporter's textfile "
    "collector (the enclave opens no port).",
)
def enclave_run(
    home: Path,
    url: str,
    cert: Path,
    key: Path,
    ca: Path,
    once: bool,
    wait: float,
    gnupghome: Path | None,
    insecure_no_sandbox: bool,
    metrics_file: Path | None,
) -> None:
    """Poll the bridge for jobs and answer each: checked in a sandbox, signed if the policy
    allows, logged either way. Opens no port."""
    from reposeal.enclave.home import EnclaveHome
    from reposeal.enclave.runner import run
    from reposeal.protocol.bridge_client import BridgeClient
    from reposeal.tls import Issued, client_context

    out = _Out(False, False)
    try:
        client = BridgeClient(url, client_context(Issued(cert, key), ca))
        served = run(
            EnclaveHome(home, gnupghome),
            client,
            once=once,
            wait=wait,
            insecure_no_sandbox=insecure_no_sandbox,
            metrics_file=metrics_file,
        )
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"served {served} job(s)")


@enclave.command("status", epilog=EXIT_CODES)
@_HOME
@click.option("--json", "as_json", is_flag=True)
@GNUPGHOME_OPTION
def enclave_status(home: Path, as_json: bool, gnupghome: Path | None) -> None:
    """Key, policy version, log size and the last signed database per repository."""
    from reposeal.enclave.home import EnclaveHome

    out = _Out(False, as_json)
    try:
        h = EnclaveHome(home, gnupghome)
        state = h.load_state()
        with h.open_log() as log:
            size = log.size
        doc = {
            "signer": h.signer().fingerprint,
            "policy_version": h.policy().version,
            "policy_sha256": h.policy_sha256(),
            "log_size": size,
            "last_db": {f"{r}/{a}": sha for (r, a), sha in sorted(state.last_db.items())},
            "packages_signed": len(state.bindings),
        }
    except ReposealError as exc:
        out.fail(exc)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        click.echo(f"{key:>16}  {value}")


@enclave.command("manifest", epilog=EXIT_CODES)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The installed reposeal package folder (default: the one running).",
)
def enclave_manifest(output: Path, root: Path | None) -> None:
    """Write the manifest of the installed reposeal files (sha256 of each), for the admins
    to sign (`reposeal policy sign --signer ... MANIFEST`, the policy's admin threshold);
    `enclave selfcheck` then compares the installed files with it."""
    from reposeal.enclave.selfcheck import installed_root, make_manifest
    from reposeal.fsio import atomic_write

    atomic_write(output, make_manifest(root or installed_root()))
    click.echo(f"wrote {output}; now have the admins sign it")


@enclave.command("selfcheck", epilog=EXIT_CODES)
@click.option("--home", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--manifest",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The admin-signed manifest of the installed files (MANIFEST.sig beside it).",
)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@GNUPGHOME_OPTION
@click.option("--json", "as_json", is_flag=True)
def enclave_selfcheck(
    home: Path, manifest: Path, root: Path | None, gnupghome: Path | None, as_json: bool
) -> None:
    """Check this enclave (a timer runs it): installed files against the signed manifest,
    the whole log, the signing key, the policy. Exit 5 and SELFCHECK FAILED on stderr on
    any difference."""
    import sys

    from reposeal.enclave.selfcheck import selfcheck

    report = selfcheck(home, manifest, root, gnupghome)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "checks": report.checks}, indent=2))
    else:
        for c in report.checks:
            click.echo(f"{'ok    ' if c['ok'] else 'FAILED'} {c['check']}")
            for p in c["problems"][:20]:
                click.echo(f"         {p}")
    if not report.ok:
        from reposeal.enclave.hold import hold

        failed = [f"{c['check']}: {'; '.join(c['problems'][:3])}" for c in report.checks
                  if not c["ok"]]  # fmt: skip
        hold(home, "selfcheck", failed)
        click.echo(
            "SELFCHECK FAILED: the enclave is on hold and signs nothing until an admin has "
            f"understood it and runs `reposeal enclave clear-hold --home {home} --reason TEXT`",
            err=True,
        )
        sys.exit(5)


@enclave.command("rehearse", epilog=EXIT_CODES)
@click.option(
    "--home",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The live enclave home (only read).",
)
@click.option("--from", "log_url", required=True, help="The log on a mirror (URL of MIRROR/log).")
@click.option(
    "--keyring",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The repository key the mirror's checkpoint must be signed by.",
)
@click.option("--scratch", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to rebuild (a fresh folder inside it is made and removed).")  # fmt: skip
def enclave_rehearse(home: Path, log_url: str, keyring: Path, scratch: Path) -> None:
    """The rebuild rehearsal (a timer runs it): rebuild this enclave's state from a mirror as
    a real rebuild would, audit it, and compare it with the live home: the same log (same
    root at the rebuilt size), the same genesis and policy. Exit 0: a rebuild would give
    this enclave back; 5: REHEARSAL MISMATCH, with what differs."""
    import sys

    from reposeal import logs
    from reposeal.enclave.audit import audit
    from reposeal.enclave.rehearsal import rehearse
    from reposeal.enclave.restore import scratch_copy
    from reposeal.openpgp.verify import Keyring

    try:
        with scratch_copy(log_url, Keyring.from_file(keyring), scratch) as copy:
            audited = audit(copy)
            result = rehearse(home, copy)
        problems = [*audited.violations, *result.problems]
    except ReposealError as exc:
        problems = [f"the rebuild failed: {exc}"]
        result = None
    if problems or result is None:
        logs.error("enclave", "REHEARSAL MISMATCH", problems=problems)
        sys.exit(5)
    logs.info("enclave", "rehearsal ok", entries=result.rebuilt.size, live=result.live_size,
              root=result.rebuilt.root.hex())  # fmt: skip


@enclave.command("clear-hold", epilog=EXIT_CODES)
@click.option("--home", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--reason", required=True, help="Why it is safe to sign again (kept).")
def enclave_clear_hold(home: Path, reason: str) -> None:
    """Lift the hold a failed self-check or host check put the enclave on (after looking at
    what it found): `enclave run` takes jobs again. The hold and the reason are kept in
    HOME/HOLD.cleared."""
    from reposeal.enclave.hold import clear, describe

    try:
        doc = clear(home, reason)
    except ReposealError as exc:
        _Out(False, False).fail(exc)
    click.echo(f"hold cleared ({describe(doc)}); the enclave signs again")


@enclave.command("restore", epilog=EXIT_CODES)
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--from", "log_url", required=True, help="The log on a mirror: URL of MIRROR/log.")
@click.option(
    "--signer", "spec", metavar="SPEC", help="pkcs11:..., soft:PATH or gpg:FPR (to rebuild)"
)
@click.option(
    "--note-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's note key (note.key), from the enclave's backup (to rebuild).",
)
@click.option(
    "--keyring",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of --signer/--note-key: the repository key you trust; writes an "
    "auditor's copy (no key) for `enclave audit`.",
)
@GNUPGHOME_OPTION
def enclave_restore(
    home: Path,
    log_url: str,
    spec: str | None,
    note_key: Path | None,
    keyring: Path | None,
    gnupghome: Path | None,
) -> None:
    """Rebuild an enclave home from the log its mirrors carry: every entry and the files it
    names, checked against the signing key and note key, then verified and replayed in
    full (run `enclave audit` and `enclave selfcheck` before `enclave run`). With
    --keyring: an auditor's copy of the log, for `enclave audit HOME`."""
    from reposeal.enclave.restore import fetch_copy, restore
    from reposeal.openpgp.verify import Keyring

    out = _Out(False, False)
    try:
        if keyring is not None:
            log, _ = fetch_copy(home, log_url, Keyring.from_file(keyring))
            size = log.checkpoint.size
        elif spec and note_key:
            restored = restore(home, log_url, spec, note_key, gnupghome=gnupghome)
            with restored.open_log() as opened:
                size = opened.size
        else:
            raise click.UsageError("give --signer and --note-key, or --keyring")
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"wrote {home}: {size} log entries, checked")


@enclave.command("signer", epilog=EXIT_CODES)
@click.option("--home", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--signer", "spec", required=True, metavar="SPEC", help="The new key: pkcs11:..., soft:PATH"
)
@GNUPGHOME_OPTION
def enclave_signer(home: Path, spec: str, gnupghome: Path | None) -> None:
    """Rotate the repository key: from now on the enclave signs with the key SPEC names.
    The policy in force must name it as a current or next repository key (publish the
    keyring package of that policy first, so users trust it before it signs); the switch
    is a log entry. Later, a policy that revokes the old key, and its keyring package,
    make pacman refuse anything the old key signs."""
    from reposeal.enclave.home import EnclaveHome

    out = _Out(False, False)
    try:
        enclave_home = EnclaveHome(home, gnupghome)
        index = enclave_home.switch_signer(spec)
    except ReposealError as exc:
        out.fail(exc)
    click.echo(f"the repository key is now {enclave_home.signer_fingerprint()} (log entry {index})")
