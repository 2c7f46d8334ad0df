"""`enclave run`: the long-lived loop. It dials out to the bridge, holds no key in its own
process beyond the signer handle, parses nothing itself (the sandboxed worker does), and
posts back one answer per job."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from reposeal.alpm.limits import DEFAULT_LIMITS
from reposeal.alpm.names import check_arch, check_name
from reposeal.enclave.dryrun import refuse_without_sandbox
from reposeal.enclave.home import EnclaveHome
from reposeal.enclave.jobs import fault_point, refresh_db, sign_db, sign_packages
from reposeal.enclave.sandbox import WorkerPool
from reposeal.errors import ReposealError
from reposeal.repo.bridge_client import BridgeClient, BridgeError
from reposeal.repo.jobformat import JOB_ID, JOB_PATH, SHA256


def handle(
    home: EnclaveHome,
    client: BridgeClient,
    job: dict[str, object],
    *,
    insecure_no_sandbox: bool,
    gnupghome: Path | None,
    pool: WorkerPool | None = None,
) -> dict[str, object]:
    files = job.get("files")
    try:  # the bridge is the repo machine's: nothing it sends is trusted
        if not JOB_ID.fullmatch(str(job.get("id"))):
            raise ReposealError("a job id is 1-128 letters, digits and ._:-")
        check_name(str(job.get("repo")))
        check_arch(str(job.get("arch")))
        if not isinstance(files, dict):
            raise ReposealError("a job must list its files")
        for rel, digest in files.items():
            if not JOB_PATH.fullmatch(str(rel)) or not SHA256.fullmatch(str(digest)):
                raise ReposealError(f"a job file is malformed: {str(rel)[:80]!r}")
    except ReposealError as exc:
        return {"job": job.get("id"), "decision": "refuse", "reasons": [str(exc)]}
    with tempfile.TemporaryDirectory(prefix="reposeal-run-") as tmp:
        folder = Path(tmp)
        for rel, digest in files.items():
            limit = DEFAULT_LIMITS.max_db_bytes if rel == "db" else DEFAULT_LIMITS.max_package_bytes
            target = folder / ("db/" + f"{job['repo']}.db.tar.gz" if rel == "db" else rel)
            client.fetch_blob(str(digest), target, limit)
        (folder / "packages").mkdir(exist_ok=True)
        (folder / "evidence").mkdir(exist_ok=True)
        job_id, repo, arch = str(job["id"]), str(job["repo"]), str(job["arch"])
        try:
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
            db = next((folder / "db").iterdir())
            if job.get("kind") == "refresh":
                return refresh_db(home, job_id, repo, arch, db, gnupghome=gnupghome).to_json()
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
            )
            return result.to_json()
        except ReposealError as exc:  # the job is answered, the enclave keeps serving
            return {"job": job["id"], "decision": "refuse", "reasons": [str(exc)]}


def run(
    home: EnclaveHome,
    client: BridgeClient,
    *,
    once: bool = False,
    wait: float = 30.0,
    insecure_no_sandbox: bool = False,
    gnupghome: Path | None = None,
) -> int:
    """Serve jobs until interrupted (or, with ``once``, until the queue is empty)."""
    refuse_without_sandbox(insecure_no_sandbox)  # no sandbox: refuse to start, loudly
    home.complete_checkpoint(home.signer(gnupghome))  # finish what a crash interrupted
    home.load_state()  # a log that does not verify stops us before any job
    served = 0
    with WorkerPool(insecure_no_sandbox=insecure_no_sandbox) as pool:  # warm between jobs
        pool.start()
        while True:
            try:
                job = client.next_job(wait)
            except BridgeError as exc:
                if once:
                    raise
                print(f"bridge: {exc.message}; retrying in 5 s", file=sys.stderr)
                time.sleep(5)
                continue
            if job is None:
                if once:
                    return served
                continue
            result = handle(
                home,
                client,
                job,
                insecure_no_sandbox=insecure_no_sandbox,
                gnupghome=gnupghome,
                pool=pool,
            )
            fault_point("before-post")
            client.post_result(str(job["id"]), result)
            served += 1
