"""`enclave run`: the long-lived loop. It dials out to the bridge, holds no key in its own
process beyond the signer handle, parses nothing itself (the sandboxed worker does), and
posts back one answer per job."""

from __future__ import annotations

import base64
import functools
import gc
import hashlib
import queue
import sqlite3
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reposeal import logs
from reposeal.alpm.limits import DEFAULT_LIMITS, MAX_PUSH_BYTES
from reposeal.enclave.answers import request_digest
from reposeal.enclave.hold import describe, held, refuse_if_held
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.jobs import propose, refresh_db, rotate_policy, sign_packages
from reposeal.enclave.jobspec import refuse_without_sandbox
from reposeal.enclave.proposal import UNSET, Proposal
from reposeal.enclave.sandbox import WorkerPool
from reposeal.errors import ReposealError
from reposeal.faults import fault_point
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.protocol.answers import JobResult
from reposeal.protocol.bridge_client import BridgeClient, BridgeError
from reposeal.protocol.jobformat import BridgeJob
from reposeal.translog.store import TransparencyLog

PUSH_EVERY = 2.0  # seconds: the log goes to the bridge at most this often while jobs come
INLINE_BYTES = 1 << 20  # small files come with the job: no request per file


def malformed(job: dict[str, object]) -> dict[str, object] | None:
    """The refusal of a job whose fields do not hold up, or None. The bridge is the repo
    machine's: nothing it sends is trusted, and nothing of a bad job is downloaded."""
    read = read_job(job)
    return read if isinstance(read, dict) else None


def read_job(job: dict[str, object]) -> BridgeJob | dict[str, object]:
    """The job as a typed record, or the refusal of one whose fields do not hold up."""
    try:
        return BridgeJob.from_json(job)
    except ReposealError as exc:
        return JobResult.refused(str(job.get("id")), str(exc)).to_json()


def proposal_of(job: BridgeJob) -> Proposal:
    """The transition a bridge job proposes (the worker checks each name again)."""
    return Proposal(
        str(job.repo),
        str(job.arch),
        add=job.add,
        moves=job.moves,
        remove=job.remove,
        # none named: no claim to check (the enclave starts from the databases it signed
        # last in any case)
        parent=job.parent if job.claims_parent else UNSET,
        compression=job.compression,
        adopt=job.kind == "adopt",
    )


@dataclass
class Fetched:
    """A job taken from the bridge, with its files downloaded; or, if it is malformed, the
    id it came under and its refusal (nothing of it downloaded)."""

    id: str
    job: BridgeJob | None
    refusal: dict[str, object] | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    head: object = None  # the bridge's newest checkpoint when it handed out the job

    @property
    def folder(self) -> Path:
        assert self.tmp is not None
        return Path(self.tmp.name)

    def cleanup(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _save_inline(inline: object, rel: str, digest: str, target: Path, limit: int) -> bool:
    """Write a file the bridge sent with the job, if it did and its hash holds (else the
    caller downloads it)."""
    if not isinstance(inline, dict) or not isinstance(inline.get(rel), str):
        return False
    try:
        data = base64.b64decode(inline[rel], validate=True)
    except ValueError:
        return False
    if len(data) > limit or hashlib.sha256(data).hexdigest() != digest:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return True


def fetch(client: BridgeClient, wait: float) -> Fetched | None:
    """The next job and its files, or None when the bridge has none within ``wait``."""
    job = client.next_job(wait, inline=INLINE_BYTES)
    if job is None:
        return None
    inline = job.pop("inline", None)
    head = job.pop("log_head", None)  # not part of the request: what the bridge shows now
    typed = read_job(job)
    if isinstance(typed, dict):
        return Fetched(str(job.get("id")), None, typed)
    folder = tempfile.TemporaryDirectory(prefix="reposeal-run-")
    got = Fetched(typed.id, typed, tmp=folder, head=head)
    try:
        for rel, digest in typed.files.items():
            limit = DEFAULT_LIMITS.max_package_bytes
            target = got.folder / rel
            if not _save_inline(inline, rel, digest, target, limit):
                client.fetch_blob(digest, target, limit)
        (got.folder / "packages").mkdir(exist_ok=True)
        (got.folder / "evidence").mkdir(exist_ok=True)
    except BaseException:
        got.cleanup()
        raise
    return got


def process(
    home: EnclaveHome,
    got: Fetched,
    *,
    insecure_no_sandbox: bool,
    pool: WorkerPool | None = None,
) -> dict[str, object]:
    """The answer to one fetched job (a refusal if anything goes wrong)."""
    if got.refusal is not None or got.job is None:
        return got.refusal or JobResult.refused(got.id, "a malformed job").to_json()
    job, folder = got.job, got.folder
    job_id, repo, arch = job.id, str(job.repo), str(job.arch)
    request = request_digest(dict(job.request))
    try:
        if job.kind == "policy":
            document = folder / "policy.json"
            return rotate_policy(home, job_id, document).to_json()
        if job.kind == "packages":
            return sign_packages(
                home,
                job_id,
                repo,
                folder / "packages",
                evidence=folder / "evidence",
                insecure_no_sandbox=insecure_no_sandbox,
                pool=pool,
                request=request,
            ).to_json()
        if job.kind == "refresh":
            return refresh_db(
                home, job_id, repo, arch, expect=job.expect, request=request
            ).to_json()
        keyring = folder / "keyring.pgp"  # an adoption's packagers' keys, if it names any
        result = propose(
            home,
            job_id,
            proposal_of(job),
            folder / "packages",
            evidence=folder / "evidence",
            insecure_no_sandbox=insecure_no_sandbox,
            pool=pool,
            request=request,
            keyring=keyring.read_bytes() if job.kind == "adopt" and keyring.exists() else None,
        )
        return result.to_json()
    except ReposealError as exc:  # the job is answered, the enclave keeps serving
        return JobResult.refused(job_id, str(exc)).to_json()
    except Exception as exc:  # a bug must not stop the enclave: say so, refuse, go on
        traceback.print_exc()
        why = f"internal error in the enclave ({type(exc).__name__}); nothing signed"
        return JobResult.refused(job_id, why).to_json()


class _Ahead:
    """Fetches the next job (long poll, downloads) in a thread while the current one is
    checked and signed; the enclave's only bridge traffic besides posting answers."""

    def __init__(self, client: BridgeClient, wait: float) -> None:
        self.client, self.wait = client, wait
        self._box: queue.Queue[Fetched | BaseException | None] = queue.Queue(maxsize=1)

    def start(self) -> None:
        threading.Thread(target=self._fetch, name="reposeal-fetch", daemon=True).start()

    def _fetch(self) -> None:
        try:
            self._box.put(fetch(self.client, self.wait))
        except BaseException as exc:  # handed to the loop, which decides
            self._box.put(exc)

    def result(self) -> Fetched | None:
        item = self._box.get()
        if isinstance(item, BaseException):
            raise item
        return item


class _Poster:
    """Posts answers in order from a thread, so the next job is checked meanwhile. An answer
    is only ever posted after its entry is in the log; if the enclave dies first, the bridge
    hands the job out again and the log answers it. When the answers are out (at most every
    ``PUSH_EVERY`` seconds while they keep coming), what the log gained goes to the bridge's
    copy, which the mirror publishes."""

    def __init__(self, client: BridgeClient, retry: bool, home: EnclaveHome | None = None) -> None:
        self.client, self.retry, self.home = client, retry, home
        self._box: queue.Queue[tuple[str, dict[str, object], bool] | None] = queue.Queue()
        self.failure: BaseException | None = None
        self._pushed: int | None = None  # the copy's size, as the bridge last said
        self._cert: bytes | None = None
        self._thread = threading.Thread(target=self._post, name="reposeal-post", daemon=True)
        self._thread.start()

    def _post(self) -> None:
        dirty, last = self.home is not None, 0.0  # at start: whatever the copy lacks
        while True:
            wait = max(0.0, last + PUSH_EVERY - time.monotonic()) if dirty else None
            try:
                item = self._box.get(timeout=wait) if self._box.empty() else self._box.get()
                timed_out = False
            except queue.Empty:
                item, timed_out = None, True
            if item is None:  # time to push, or the end
                if dirty:
                    self._try_push()
                dirty, last = False, time.monotonic()
                if not timed_out:
                    return
                continue
            job_id, result, urgent = item
            if not self._attempt(functools.partial(self.client.post_result, job_id, result)):
                return
            dirty = self.home is not None
            if dirty and urgent:  # a database answer: its cycle waits for the log
                self._try_push()
                dirty, last = False, time.monotonic()

    def _attempt(self, action: Callable[[], None]) -> bool:
        """Do ``action``, retrying bridge failures (if asked); False: stop posting."""
        while True:
            try:
                action()
                return True
            except BridgeError as exc:
                if not self.retry:
                    self.failure = exc  # reported by the loop, which stops
                    return False
                logs.warning("enclave", "bridge unreachable", message=exc.message, retry_in=5)
                time.sleep(5)
            except BaseException as exc:
                self.failure = exc
                return False

    def _try_push(self) -> None:
        """Push the log; a failure is reported and tried again after the next answer (it
        never holds up answers: the mirror's log lags, the repo machine's cycle waits)."""
        try:
            self._push_log()
        except (BridgeError, ReposealError, OSError, sqlite3.Error) as exc:
            self._pushed = None  # ask the bridge its size next time
            logs.warning("enclave", "log not pushed", message=str(exc))

    def _push_log(self) -> None:
        """Send the bridge's copy what it lacks, up to our latest checkpoint (read on a
        connection of our own: only committed entries, each with its checkpoint)."""
        assert self.home is not None
        with TransparencyLog(self.home.log_path) as log:
            latest = log.latest_checkpoint()
            if latest is None:
                return
            size, _, note = latest
            start = self.client.log_size() if self._pushed is None else self._pushed
            while start < size:
                batch: list[bytes] = []
                total = 0
                for e in log.entries(start, size):
                    if batch and total + len(e) > MAX_PUSH_BYTES:
                        break
                    batch.append(e)
                    total += len(e)
                end = start + len(batch)
                files: dict[str, bytes] = {}
                for e in batch:  # what the entries name goes first
                    files |= self.home.files_named_by(e)
                if files:
                    self.client.push_log_files(files)
                cp = note if end == size else self.home.checkpoint_note(log, end)
                kept, now = self.client.push_log(start, batch, cp, self._signature(cp))
                if not kept and (now == start or now > size):
                    raise BridgeError(
                        f"the bridge's log copy refused entries {start}-{end} (it holds {now}); "
                        "is it the copy of another log?"
                    )
                start = now
            self._pushed = start

    def _signature(self, note: bytes) -> bytes | None:
        """The repository key's signature of this very checkpoint note: kept under the
        note's hash before the checkpoint was committed (so a committed checkpoint has
        one), else checkpoint.sig if it signs this note (it is remade when lost); None for
        an intermediate checkpoint made for a push in steps."""
        assert self.home is not None
        for sig in (self.home.checkpoint_signature(note), self._file("checkpoint.sig")):
            if sig is None:
                continue
            try:
                if self._cert is None:
                    self._cert = self.home.key().certificate()
                verify_detached(note, sig, Keyring.from_bytes(self._cert))
                return sig
            except ReposealError:
                continue
        return None

    def _file(self, name: str) -> bytes | None:
        assert self.home is not None
        try:
            return (self.home.path / name).read_bytes()
        except OSError:
            return None

    def post(self, job_id: str, result: dict[str, object], urgent: bool = False) -> None:
        """Queue an answer; ``urgent``: push the log right after it (database answers, whose
        update cycle publishes the log next)."""
        if self.failure is not None:
            raise self.failure
        self._box.put((job_id, result, urgent))

    def finish(self) -> None:
        """Wait until every answer is posted (and the log pushed)."""
        self._box.put(None)
        self._thread.join()
        if self.failure is not None:
            raise self.failure


def run(
    home: EnclaveHome,
    client: BridgeClient,
    *,
    once: bool = False,
    wait: float = 30.0,
    insecure_no_sandbox: bool = False,
    pool: WorkerPool | None = None,
    metrics_file: Path | None = None,
) -> int:
    """Serve jobs until interrupted (or, with ``once``, until the queue is empty).
    ``pool``: an already started sandbox to use (else one is started and stopped here).
    ``metrics_file``: where to keep the metrics (node_exporter's textfile collector)."""
    refuse_without_sandbox(insecure_no_sandbox)  # no sandbox: refuse to start, loudly
    _wait_while_held(home, once)  # a finding about this machine: sign nothing
    home.complete_checkpoint(home.key())  # finish what a crash interrupted
    home.load_state()  # a log that does not verify stops us before any job
    _anchor(home, client, once)  # nor does a log behind what we published
    gc.freeze()  # the replayed history stays; the collector need not walk it after each job
    try:  # what a previous run took (and maybe died with) comes back at once, not at lease end
        client.release()
    except BridgeError as exc:
        if once:
            raise
        logs.warning("enclave", "release failed", message=exc.message,
                     effect="taken jobs come back after their lease")  # fmt: skip
    ahead = _Ahead(client.clone(), wait)  # each thread its own connection
    poster = _Poster(client, retry=not once, home=home)
    logs.info("enclave", "pulling", home=str(home.path), bridge=f"{client.host}:{client.port}")
    own = pool is None
    workers = pool or WorkerPool(insecure_no_sandbox=insecure_no_sandbox)  # warm between jobs
    try:
        workers.start()
        ahead.start()
        try:
            meter = _Meter(metrics_file, home)
            return _serve(home, ahead, poster, workers, once, insecure_no_sandbox, meter)
        finally:
            poster.finish()
    finally:
        if own:
            workers.close()


def _anchor(home: EnclaveHome, client: BridgeClient, once: bool) -> None:
    """Check the home's log against the newest checkpoint it published (the bridge's copy)
    before serving anything; wait for the bridge rather than sign without that check."""
    while True:
        try:
            home.check_anchor(client.log_head()[1])  # the size is inside the note
            return
        except BridgeError as exc:
            if once:
                raise
            logs.warning("enclave", "bridge unreachable", message=exc.message, retry_in=5)
            time.sleep(5)


class _Meter:
    """The enclave's metrics, kept in a file after every job (it opens no port)."""

    def __init__(self, path: Path | None, home: EnclaveHome) -> None:
        from reposeal.metrics import Metrics

        self.path, self.home = path, home
        self.metrics = Metrics("enclave")
        self.metrics.gauges(self._sample, {"reposeal_log_entries": "Entries in the log."})
        self._write()

    def _sample(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        with self.home.open_log() as log:
            return {"reposeal_log_entries": {(): float(log.size)}}

    def count(self, kind: str, result: dict[str, object], seconds: float) -> None:
        decision = str(result.get("decision"))
        reasons = result.get("reasons")
        self.metrics.job(kind, decision, seconds)
        self.metrics.decision(kind, decision, reasons if isinstance(reasons, list) else [])
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.metrics.write(self.path)
        except OSError as exc:  # metrics never stop signing
            logs.warning("enclave", "metrics not written", path=str(self.path), message=str(exc))


def _wait_while_held(home: EnclaveHome, once: bool, every: float = 5.0) -> None:
    """On hold: stop (``once``), or wait until an admin clears it, saying so each minute."""
    said = 0.0
    while (doc := held(home.path)) is not None:
        if once:
            refuse_if_held(home.path)
        if time.monotonic() - said > 60:
            how = f"reposeal enclave clear-hold --home {home.path} --reason TEXT"
            logs.error("enclave", "on hold", findings=describe(doc), clear=how)
            said = time.monotonic()
        time.sleep(every)


def _log_decision(job_id: str, kind: str, result: dict[str, object], seconds: float) -> None:
    decision = result.get("decision")
    fields = {"id": job_id, "kind": kind, "decision": decision, "seconds": round(seconds, 3)}
    if decision == "accept":
        logs.info("enclave", "decision", **fields, log_index=result.get("log_index"))
    else:
        logs.warning("enclave", "refused", **fields, reasons=result.get("reasons", []))


def _check_head(home: EnclaveHome, head: object) -> None:
    """Refuse to sign on when the checkpoint the bridge shows with a job (the newest this
    enclave signed, with its witnesses' cosignatures) is ahead of this home's log."""
    if not isinstance(head, dict) or not isinstance(head.get("checkpoint"), str):
        return
    home.check_anchor(head["checkpoint"].encode())  # only what our key signed counts


def _serve(
    home: EnclaveHome,
    ahead: _Ahead,
    poster: _Poster,
    pool: WorkerPool,
    once: bool,
    insecure_no_sandbox: bool,
    meter: _Meter,
) -> int:
    served = 0
    while True:
        try:
            got = ahead.result()
        except BridgeError as exc:
            if once:
                raise
            logs.warning("enclave", "bridge unreachable", message=exc.message, retry_in=5)
            time.sleep(5)
            ahead.start()
            continue
        if got is None:
            if once:
                return served
            ahead.start()
            continue
        if held(home.path) is not None:  # put on hold since: this job waits for its lease
            got.cleanup()
            _wait_while_held(home, once)
            ahead.start()
            continue
        ahead.start()  # the next job downloads while this one is checked and signed
        _check_head(home, got.head)  # a log behind what it published: stop, sign nothing
        job_id = got.id
        kind = got.job.kind if got.job is not None else "malformed"
        logs.info("enclave", "job", id=job_id, kind=kind, repo=got.job.repo if got.job else None)
        started = time.monotonic()
        try:
            result = process(
                home,
                got,
                insecure_no_sandbox=insecure_no_sandbox,
                pool=pool,
            )
        finally:
            got.cleanup()
        _log_decision(job_id, kind, result, time.monotonic() - started)
        meter.count(kind, result, time.monotonic() - started)
        fault_point("before-post")
        poster.post(job_id, result, urgent=kind in ("transition", "refresh", "adopt"))
        served += 1
