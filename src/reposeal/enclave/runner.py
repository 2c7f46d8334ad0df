"""`enclave run`: the long-lived loop. It dials out to the bridge, holds no key in its own
process beyond the signer handle, parses nothing itself (the sandboxed worker does), and
posts back one answer per job."""

from __future__ import annotations

import base64
import gc
import hashlib
import queue
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.names import check_arch, check_name
from reposeal.enclave.dryrun import refuse_without_sandbox
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.jobs import (
    refresh_db,
    rotate_policy,
    sign_db,
    sign_packages,
)
from reposeal.enclave.sandbox import WorkerPool
from reposeal.errors import ReposealError
from reposeal.faults import fault_point
from reposeal.repo.bridge_client import BridgeClient, BridgeError
from reposeal.repo.jobformat import JOB_ID, JOB_PATH, SHA256

INLINE_BYTES = 1 << 20  # small files come with the job: no request per file
DB_FILES = {"db": "db/repo.db.tar", "files_db": "db/repo.files.tar"}  # a job's databases


def malformed(job: dict[str, object]) -> dict[str, object] | None:
    """The refusal of a job whose fields do not hold up, or None. The bridge is the repo
    machine's: nothing it sends is trusted, and nothing of a bad job is downloaded."""
    files = job.get("files")
    try:
        if not JOB_ID.fullmatch(str(job.get("id"))):
            raise ReposealError("a job id is 1-128 letters, digits and ._:-")
        if job.get("kind") != "policy":
            check_name(str(job.get("repo")))
            check_arch(str(job.get("arch")))
        if not isinstance(files, dict):
            raise ReposealError("a job must list its files")
        for rel, digest in files.items():
            if not JOB_PATH.fullmatch(str(rel)) or not SHA256.fullmatch(str(digest)):
                raise ReposealError(f"a job file is malformed: {str(rel)[:80]!r}")
    except ReposealError as exc:
        return {"job": job.get("id"), "decision": "refuse", "reasons": [str(exc)]}
    return None


@dataclass
class Fetched:
    """A job taken from the bridge, with its files downloaded (unless it is malformed)."""

    job: dict[str, object]
    refusal: dict[str, object] | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None

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
    refusal = malformed(job)
    if refusal is not None:
        return Fetched(job, refusal)
    got = Fetched(job, tmp=tempfile.TemporaryDirectory(prefix="reposeal-run-"))
    try:
        files = job["files"]
        assert isinstance(files, dict)
        for rel, digest in files.items():
            limit = DEFAULT_LIMITS.max_package_bytes
            target = got.folder / rel
            if rel in DB_FILES:
                limit, target = DEFAULT_LIMITS.max_db_bytes, got.folder / DB_FILES[rel]
            if not _save_inline(inline, rel, str(digest), target, limit):
                client.fetch_blob(str(digest), target, limit)
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
    gnupghome: Path | None,
    pool: WorkerPool | None = None,
) -> dict[str, object]:
    """The answer to one fetched job (a refusal if anything goes wrong)."""
    if got.refusal is not None:
        return got.refusal
    job, folder = got.job, got.folder
    job_id, repo, arch = str(job["id"]), str(job.get("repo")), str(job.get("arch"))
    try:
        if job.get("kind") == "policy":
            document = folder / "policy.json"
            return rotate_policy(home, job_id, document, gnupghome=gnupghome).to_json()
        if job.get("kind") == "packages":
            return sign_packages(
                home,
                job_id,
                repo,
                folder / "packages",
                evidence=folder / "evidence",
                gnupghome=gnupghome,
                insecure_no_sandbox=insecure_no_sandbox,
                pool=pool,
            ).to_json()
        db, files_db = folder / DB_FILES["db"], folder / DB_FILES["files_db"]
        if not db.exists():
            raise ReposealError("a database job must send its database")
        files = files_db if files_db.exists() else None
        if job.get("kind") == "refresh":
            return refresh_db(
                home, job_id, repo, arch, db, gnupghome=gnupghome, files_db=files
            ).to_json()
        claimed = job.get("parent")
        result = sign_db(
            home,
            job_id,
            repo,
            arch,
            db,
            evidence=folder / "evidence",
            packages=folder / "packages",
            insecure_no_sandbox=insecure_no_sandbox,
            gnupghome=gnupghome,
            check_parent="parent" in job,
            claimed_parent=str(claimed) if claimed else None,
            pool=pool,
            files_db=files,
        )
        return result.to_json()
    except ReposealError as exc:  # the job is answered, the enclave keeps serving
        return {"job": job["id"], "decision": "refuse", "reasons": [str(exc)]}
    except Exception as exc:  # a bug must not stop the enclave: say so, refuse, go on
        traceback.print_exc()
        return {
            "job": job["id"],
            "decision": "refuse",
            "reasons": [f"internal error in the enclave ({type(exc).__name__}); nothing signed"],
        }


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
    hands the job out again and the log answers it."""

    def __init__(self, client: BridgeClient, retry: bool) -> None:
        self.client, self.retry = client, retry
        self._box: queue.Queue[tuple[str, dict[str, object]] | None] = queue.Queue()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._post, name="reposeal-post", daemon=True)
        self._thread.start()

    def _post(self) -> None:
        while (item := self._box.get()) is not None:
            while True:
                try:
                    self.client.post_result(*item)
                    break
                except BridgeError as exc:
                    if not self.retry:
                        self.failure = exc  # reported by the loop, which stops
                        return
                    print(f"bridge: {exc.message}; posting again in 5 s", file=sys.stderr)
                    time.sleep(5)
                except BaseException as exc:
                    self.failure = exc
                    return

    def post(self, job_id: str, result: dict[str, object]) -> None:
        if self.failure is not None:
            raise self.failure
        self._box.put((job_id, result))

    def finish(self) -> None:
        """Wait until every answer is posted."""
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
    gnupghome: Path | None = None,
    pool: WorkerPool | None = None,
) -> int:
    """Serve jobs until interrupted (or, with ``once``, until the queue is empty).
    ``pool``: an already started sandbox to use (else one is started and stopped here)."""
    refuse_without_sandbox(insecure_no_sandbox)  # no sandbox: refuse to start, loudly
    home.complete_checkpoint(home.signer(gnupghome))  # finish what a crash interrupted
    home.load_state()  # a log that does not verify stops us before any job
    gc.freeze()  # the replayed history stays; the collector need not walk it after each job
    try:  # what a previous run took (and maybe died with) comes back at once, not at lease end
        client.release()
    except BridgeError as exc:
        if once:
            raise
        print(f"bridge: {exc.message}; taken jobs come back after their lease", file=sys.stderr)
    ahead = _Ahead(client.clone(), wait)  # each thread its own connection
    poster = _Poster(client, retry=not once)
    own = pool is None
    workers = pool or WorkerPool(insecure_no_sandbox=insecure_no_sandbox)  # warm between jobs
    try:
        workers.start()
        ahead.start()
        try:
            return _serve(home, ahead, poster, workers, once, insecure_no_sandbox, gnupghome)
        finally:
            poster.finish()
    finally:
        if own:
            workers.close()


def _serve(
    home: EnclaveHome,
    ahead: _Ahead,
    poster: _Poster,
    pool: WorkerPool,
    once: bool,
    insecure_no_sandbox: bool,
    gnupghome: Path | None,
) -> int:
    served = 0
    while True:
        try:
            got = ahead.result()
        except BridgeError as exc:
            if once:
                raise
            print(f"bridge: {exc.message}; retrying in 5 s", file=sys.stderr)
            time.sleep(5)
            ahead.start()
            continue
        if got is None:
            if once:
                return served
            ahead.start()
            continue
        ahead.start()  # the next job downloads while this one is checked and signed
        try:
            result = process(
                home,
                got,
                insecure_no_sandbox=insecure_no_sandbox,
                gnupghome=gnupghome,
                pool=pool,
            )
        finally:
            got.cleanup()
        fault_point("before-post")
        poster.post(str(got.job["id"]), result)
        served += 1
