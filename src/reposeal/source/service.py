"""`reposeal source serve`: the source machine (role 1). HTTPS with mutual TLS; each endpoint
checks the role in the caller's verified certificate.

It watches the PKGBUILD git repositories: every new head commit is a proposal. Maintainers
see the diff and send signed approvals; a commit with the policy's approval quorum (the
author's own approval counts only if the policy says so) becomes a build job, and its
approvals go to the repo machine. Builders take each job, build it in a fresh sandbox,
upload the packages with their build statements to the repo machine and report here what
they made, so two builders that disagree are shown with the files that differ.

    GET  /proposals                        maintainer, builder, repo   what waits for whom
    GET  /proposals/{pkgbase}/{commit}     maintainer   the commit, its PKGBUILD hash, the
                                                        diff since the last built commit
    POST /approvals                        maintainer   {statement, signatures} (base64)
    POST /withdrawals                      maintainer   the same, of a withdrawal: its job
                                                        goes to no builder any more
    GET  /jobs/next?wait=SEC[&arch=ARCH]   builder      the next job (of its architecture) this
                                                        builder has not built
    GET  /jobs/{id}/source                 builder      the commit's tree (tar)
    POST /jobs/{id}/report                 builder      {files: {name: {sha256, contents}}}
    POST /jobs/release                     builder      at start: what it held comes back
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pysequoia
from aiohttp import web

from reposeal import logs
from reposeal.alpm.limits import (
    MAX_PKGBUILD_TEXT,
    MAX_REPORT_FILES,
    MAX_SOURCE_BODY,
    MAX_STATEMENT_BYTES,
)
from reposeal.errors import ReposealError
from reposeal.evidence.quorum import Signed, checked_statement, load_signed
from reposeal.evidence.statements import (
    Approval,
    StatementError,
    Withdrawal,
    from_bytes,
    of_kind,
)
from reposeal.policy.document import Policy
from reposeal.protocol.bridge_client import BridgeClient
from reposeal.protocol.roles import require_role
from reposeal.protocol.wire import json_body
from reposeal.source import gitrepo
from reposeal.source.rules import author_key, differences, tally
from reposeal.source.store import Proposal, SourceStore
from reposeal.tls import name_of


class Source:
    """The source machine's state and decisions, shared by the HTTP handlers."""

    def __init__(
        self,
        folder: Path,
        repos: Path,
        policy: Callable[[], Policy],
        target: str,
        repo_machine: BridgeClient | None,
    ) -> None:
        self.store = SourceStore(folder)
        self.repos = repos
        self.policy = policy
        self.target = target
        self.repo_machine = repo_machine
        self.jobs = asyncio.Event()

    def _maintainers(self, policy: Policy) -> list[tuple[str, list[str]]]:
        out = []
        for role, certs in policy.armored:
            if role == "maintainers":
                for armored in certs:
                    cert = pysequoia.Cert.from_bytes(armored.encode())
                    out.append((cert.fingerprint, [str(u) for u in cert.user_ids]))
        return out

    def _author(
        self,
        path: Path,
        head: gitrepo.Commit,
        policy: Policy,
        maintainers: list[tuple[str, list[str]]],
    ) -> str | None:
        """Who wrote a commit, as far as approvals go: the maintainer whose key signed it
        (as `git verify-commit` against the policy's maintainer keyring), else the maintainer
        who committed it. Emails are the committer's to choose, so an author email never
        decides: nobody approves their own change by writing someone else's address."""
        from reposeal.openpgp.verify import verify_detached

        signed = gitrepo.signed_payload(path, head.id)
        if signed is not None:
            try:
                return verify_detached(signed[0], signed[1], policy.keyrings["maintainers"])
            except ReposealError:
                pass  # not a maintainer's signature: the committer decides
        return author_key(head.committer_email, maintainers)

    def scan(self) -> list[dict[str, Any]]:
        """New head commits of the repositories, as proposals."""
        policy = self.policy()
        maintainers = self._maintainers(policy)
        new = []
        for pkgbase, path in gitrepo.repositories(self.repos).items():
            try:
                head = gitrepo.head(path, pkgbase)
                if self.store.proposal(pkgbase, head.id) is not None:
                    continue
                digest = hashlib.sha256(gitrepo.pkgbuild(path, head.id)).hexdigest()
            except ReposealError as exc:
                logs.error("source", "error", pkgbase=pkgbase, message=str(exc))
                continue
            p = Proposal(head, digest, self._author(path, head, policy, maintainers))
            if self.store.add_proposal(p):
                new.append(p.to_json())
        return new

    def _tallies(self, p: Proposal, policy: Policy) -> dict[str, Any]:
        signed = self._signed(p.pkgbase, p.commit.id, policy)
        repos = {s.statement.repo for s in signed if isinstance(s.statement, Approval)}
        return {
            repo: tally(signed, repo, p.author, policy.approvals, policy.exclude_author)
            for repo in sorted(repos | {self.target})
        }

    def _signed(self, pkgbase: str, commit: str, policy: Policy) -> list[Signed]:
        keyring = policy.keyrings["maintainers"]
        return [load_signed(r, s, keyring) for _, r, s in self.store.approvals(pkgbase, commit)]

    def proposals(self) -> list[dict[str, Any]]:
        policy = self.policy()
        maintainers = [fpr.upper() for fpr, _ in self._maintainers(policy)]
        out = []
        for p in self.store.proposals():
            tallies = self._tallies(p, policy)
            jobs = []
            for job in self.store.jobs_of(p.pkgbase, p.commit.id):
                reports = self.store.reports(job.id)
                jobs.append(
                    job.to_json()
                    | {
                        "built_by": sorted(reports),
                        "differences": differences(_as_reports(reports)),
                    }
                )
            out.append(
                p.to_json()
                | {
                    "approvals": {
                        repo: {
                            "signers": sorted(t.signers),
                            "missing": t.missing(),
                            "needed_more": max(0, t.needed - len(t.signers)),
                            "could_approve": sorted(
                                set(maintainers) - t.signers - t.excluded - _author_out(p, policy)
                            ),
                        }
                        for repo, t in tallies.items()
                    },
                    "jobs": jobs,
                    "withdrawn": self._withdrawn(p.pkgbase, p.commit.id, policy),
                }
            )
        return out

    def names(self) -> dict[str, str]:
        """Maintainer fingerprints -> the user ID to show for them."""
        return {fpr.upper(): (uids[0] if uids else fpr) for fpr, uids in
                self._maintainers(self.policy())}  # fmt: skip

    def _withdrawn(self, pkgbase: str, commit: str, policy: Policy) -> dict[str, list[str]]:
        """repo -> the maintainer keys that withdrew this commit from it."""
        keyring = policy.keyrings["maintainers"]
        out: dict[str, list[str]] = {}
        for repo, raw, sigs in self.store.withdrawals(pkgbase, commit):
            signers = load_signed(raw, sigs, keyring).signers
            if signers:
                out.setdefault(repo, []).extend(sorted(signers))
        return out

    def describe(self, pkgbase: str, commit: str) -> dict[str, Any]:
        p = self.store.proposal(pkgbase, commit)
        path = gitrepo.repositories(self.repos).get(pkgbase)
        if p is None or path is None:
            raise web.HTTPNotFound(text=f"no proposal {pkgbase} {commit}")
        last = self.store.last_built(pkgbase, self.store.seen_at(pkgbase, commit))
        return p.to_json() | {
            "target": self.target,
            "last_built": last,
            "diff": gitrepo.diff(path, last, commit),
        }

    def approve(self, raw: bytes, sigs: bytes) -> dict[str, Any]:
        """Keep a maintainer's approval if it is one, for a proposal, as the proposal is; when
        its commit reaches the quorum, make the build job."""
        policy = self.policy()
        signed = _maintainers_statement(raw, sigs, policy, Approval)
        stmt = of_kind(signed.statement, Approval)
        p = self.store.proposal(stmt.pkgbase, stmt.commit)
        if p is None:
            raise _refused(f"{stmt.pkgbase} has no proposal {stmt.commit} (not a head seen here)")
        if stmt.pkgbuild_sha256 != p.pkgbuild_sha256:
            raise _refused("the approval names another PKGBUILD than the commit holds")
        if stmt.author != p.author:
            raise _refused(f"the approval names author {stmt.author}, the commit's is {p.author}")
        if policy.rule(stmt.repo) is None:
            raise _refused(f"{stmt.repo} is not a repository of the policy")
        self.store.add_approval(
            hashlib.sha256(raw).hexdigest(), stmt.repo, stmt.pkgbase, stmt.commit, raw, sigs,
            policy.keyrings["maintainers"],
        )  # fmt: skip
        t = self._tallies(p, policy)[stmt.repo]
        jobs = []
        rule = policy.rule(stmt.repo)
        arches = list(rule.arches) if rule is not None and rule.arches else [""]
        if t.reached:  # a job per architecture of the repository: its builders take it
            for arch in arches:
                made = self.store.add_job(
                    stmt.repo, stmt.pkgbase, stmt.commit, p.commit.timestamp, arch, len(arches) > 1
                )
                if made:
                    jobs.append(made)
        return {
            "counted": sorted(t.signers),
            "missing": t.missing(),
            "job": jobs[0] if len(jobs) == 1 else (jobs or None),
        }

    def withdraw(self, raw: bytes, sigs: bytes) -> dict[str, Any]:
        """Keep a maintainer's withdrawal of a proposal: its build job goes to no builder
        any more, and the repo machine is told (one maintainer is enough: dropping is the
        safe side)."""
        policy = self.policy()
        signed = _maintainers_statement(raw, sigs, policy, Withdrawal)
        stmt = of_kind(signed.statement, Withdrawal)
        if self.store.proposal(stmt.pkgbase, stmt.commit) is None:
            raise _refused(f"{stmt.pkgbase} has no proposal {stmt.commit} (not a head seen here)")
        self.store.add_withdrawal(
            hashlib.sha256(raw).hexdigest(), stmt.repo, stmt.pkgbase, stmt.commit, raw, sigs
        )
        return {"withdrawn": sorted(signed.signers), "jobs": [
            j.id for j in self.store.jobs_of(stmt.pkgbase, stmt.commit) if j.repo == stmt.repo
        ]}  # fmt: skip

    def forward(self) -> int:
        """Send the repo machine the approvals of commits being built (and signatures added
        since) and every withdrawal; what fails is sent on the next round."""
        if self.repo_machine is None:
            return 0
        sent = 0
        for digest, raw, sigs in self.store.unforwarded_withdrawals() + self.store.unforwarded():
            try:
                self.repo_machine.push_statement(raw, sigs, self._approved_text(raw))
            except ReposealError as exc:
                logs.warning("source", "forward failed", statement=digest[:12], message=str(exc))
                continue
            self.store.forwarded(digest, sigs)
            sent += 1
        return sent

    def _approved_text(self, raw: bytes) -> bytes | None:
        """The PKGBUILD an approval approves, as its commit holds it (for the mirrors to
        show; None for other statements, or a text too large to publish)."""
        stmt = from_bytes(raw)
        if not isinstance(stmt, Approval):
            return None
        path = gitrepo.repositories(self.repos).get(stmt.pkgbase)
        if path is None:
            return None
        try:
            text = gitrepo.pkgbuild(path, stmt.commit)
        except ReposealError:
            return None
        big = len(text) > MAX_PKGBUILD_TEXT
        return None if big or hashlib.sha256(text).hexdigest() != stmt.pkgbuild_sha256 else text

    def source_tar(self, job_id: str) -> bytes:
        job = self.store.job(job_id)
        path = gitrepo.repositories(self.repos).get(job.pkgbase) if job else None
        if job is None or path is None:
            raise web.HTTPNotFound(text=f"no job {job_id}")
        return gitrepo.archive(path, job.commit)


def _say(message: str) -> None:
    logs.info("source", message)


def _author_out(p: Proposal, policy: Policy) -> set[str]:
    """The author's key, when the policy does not let authors approve their own change."""
    return {p.author.upper()} if policy.exclude_author and p.author else set()


def _maintainers_statement(
    raw: bytes, sigs: bytes, policy: Policy, kind: type[Approval] | type[Withdrawal]
) -> Signed:
    """A statement of ``kind`` signed by at least one maintainer key of ``policy``; else a
    422 that says why."""
    what = str(kind.kind)
    try:
        return checked_statement(
            raw,
            sigs,
            policy.keyrings["maintainers"],
            (kind,),
            what,
            max_statement=MAX_STATEMENT_BYTES,
            max_signatures=MAX_SOURCE_BODY,
            unsigned=f"no signature on this {what} is by a maintainer key of the policy "
            f"(version {policy.version}): ask an admin to add your key, or sign with it",
        )
    except StatementError as exc:
        raise _refused(exc.message) from None


def _refused(message: str) -> web.HTTPException:
    return web.HTTPUnprocessableEntity(text=message)


def _as_reports(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        builder: {
            name: (str(f.get("sha256")), dict(f.get("contents", {})))
            for name, f in doc.get("files", {}).items()
        }
        for builder, doc in reports.items()
    }


def _check_report(doc: object) -> dict[str, Any]:
    """A builder's report, shaped as expected (it is shown to people, never trusted)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise web.HTTPBadRequest(text="a report is {files: {name: {sha256, contents}}}")
    for name, f in doc["files"].items():
        ok = isinstance(name, str) and isinstance(f, dict) and isinstance(f.get("sha256"), str)
        contents = f.get("contents") if isinstance(f, dict) else None
        if not ok or not isinstance(contents, dict) or len(contents) > MAX_REPORT_FILES:
            raise web.HTTPBadRequest(text=f"malformed report entry {str(name)[:80]!r}")
    return doc


async def _statement_body(request: web.Request, what: str) -> tuple[bytes, bytes]:
    try:
        doc = await json_body(request)
        raw = base64.b64decode(doc["statement"], validate=True)
        sigs = base64.b64decode(doc["signatures"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text=f"{what} is {{statement, signatures}}") from None
    return raw, sigs


def _builder(request: web.Request) -> str:
    require_role(request, "builder")
    name = name_of(request.transport.get_extra_info("peercert") if request.transport else None)
    if not name:
        raise web.HTTPForbidden(text="the builder certificate has no name")
    return name


def make_app(source: Source, poll: float = 5.0) -> web.Application:
    app = web.Application(client_max_size=MAX_SOURCE_BODY)

    async def get_proposals(request: web.Request) -> web.Response:
        require_role(request, "maintainer", "builder", "repo", "source")
        return web.json_response(await asyncio.to_thread(source.proposals))

    async def get_proposal(request: web.Request) -> web.Response:
        require_role(request, "maintainer")
        base, commit = request.match_info["pkgbase"], request.match_info["commit"]
        return web.json_response(await asyncio.to_thread(source.describe, base, commit))

    async def post_approval(request: web.Request) -> web.Response:
        require_role(request, "maintainer")
        raw, sigs = await _statement_body(request, "an approval")
        answer = await asyncio.to_thread(source.approve, raw, sigs)
        if answer["job"]:
            source.jobs.set()  # on the event loop: waiting builders look at once
            await asyncio.to_thread(source.forward)
        return web.json_response(answer)

    async def post_withdrawal(request: web.Request) -> web.Response:
        require_role(request, "maintainer")
        raw, sigs = await _statement_body(request, "a withdrawal")
        answer = await asyncio.to_thread(source.withdraw, raw, sigs)
        await asyncio.to_thread(source.forward)
        return web.json_response(answer)

    async def next_job(request: web.Request) -> web.Response:
        builder = _builder(request)
        try:
            wait = min(max(float(request.query.get("wait", "0") or 0), 0.0), 60.0)
        except ValueError:
            raise web.HTTPBadRequest(text="wait is a number of seconds") from None
        arch = request.query.get("arch") or None
        if arch is not None and not re.fullmatch(r"[a-z0-9_]{1,32}", arch):
            raise web.HTTPBadRequest(text="arch is an architecture name, like x86_64")
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            source.jobs.clear()
            job = await asyncio.to_thread(source.store.take, builder, arch)
            left = deadline - asyncio.get_running_loop().time()
            if job is not None or left <= 0 or request.transport is None:
                return web.json_response(job.to_json() if job is not None else None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(source.jobs.wait(), left)

    async def release(request: web.Request) -> web.Response:
        await asyncio.to_thread(source.store.release, _builder(request))
        return web.json_response({"released": True})

    async def job_source(request: web.Request) -> web.Response:
        _builder(request)
        data = await asyncio.to_thread(source.source_tar, request.match_info["id"])
        return web.Response(body=data, content_type="application/x-tar")

    async def post_report(request: web.Request) -> web.Response:
        builder = _builder(request)
        job_id = request.match_info["id"]
        if source.store.job(job_id) is None:
            raise web.HTTPNotFound(text=f"no job {job_id}")
        try:
            doc = _check_report(await json_body(request))
        except ValueError:
            raise web.HTTPBadRequest(text="a report is JSON") from None
        await asyncio.to_thread(source.store.add_report, job_id, builder, doc)
        reports = await asyncio.to_thread(source.store.reports, job_id)
        found = differences(_as_reports(reports))
        for line in found:
            logs.warning("source", "builders disagree", job=job_id, difference=line)
        return web.json_response({"differences": found})

    async def watcher(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                try:
                    for p in await asyncio.to_thread(source.scan):
                        logs.info("source", "proposal", pkgbase=p["pkgbase"], commit=p["commit"])
                    await asyncio.to_thread(source.forward)
                except Exception as exc:  # the watcher must not die: report, try again
                    logs.error("source", "error", kind=type(exc).__name__, message=str(exc))
                await asyncio.sleep(poll)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app.cleanup_ctx.append(watcher)
    app.router.add_get("/proposals", get_proposals)
    app.router.add_get("/proposals/{pkgbase}/{commit}", get_proposal)
    app.router.add_post("/approvals", post_approval)
    app.router.add_post("/withdrawals", post_withdrawal)
    app.router.add_get("/jobs/next", next_job)
    app.router.add_post("/jobs/release", release)
    app.router.add_get("/jobs/{id}/source", job_source)
    app.router.add_post("/jobs/{id}/report", post_report)
    return app


SOURCE_GAUGES = {
    "reposeal_proposals": "Proposals, by whether they have their approvals.",
    "reposeal_build_jobs": "Build jobs, by state.",
    "reposeal_builder_disagreements": "Build jobs whose builders made different packages.",
}


def make_public_app(source: Source, hostcheck_dir: Path | None = None) -> web.Application:
    """What anyone may read (``--public-listen``): the status page, with each proposal's
    approvers by name and what it still needs, and the metrics."""
    from reposeal.metrics import Metrics, add_route
    from reposeal.statuspages import render_source

    metrics = Metrics("source")

    def sample() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        proposals = source.proposals()
        approved = sum(
            1 for p in proposals if p["approvals"] and all(not a["needed_more"]
                                                           for a in p["approvals"].values())
        )  # fmt: skip
        states: dict[str, float] = {}
        disagreeing = 0
        for p in proposals:
            for job in p["jobs"]:
                states[str(job.get("state"))] = states.get(str(job.get("state")), 0) + 1
                disagreeing += bool(job["differences"])
        return {
            "reposeal_proposals": {
                (("state", "approved"),): float(approved),
                (("state", "awaiting approvals"),): float(len(proposals) - approved),
            },
            "reposeal_build_jobs": {(("state", k),): n for k, n in states.items()},
            "reposeal_builder_disagreements": {(): float(disagreeing)},
        }

    metrics.gauges(sample, SOURCE_GAUGES)

    async def page(request: web.Request) -> web.Response:
        proposals = await asyncio.to_thread(source.proposals)
        names = await asyncio.to_thread(source.names)
        checks = None
        if hostcheck_dir is not None:
            from reposeal.metrics import read_hostchecks

            checks = await asyncio.to_thread(read_hostchecks, hostcheck_dir)
        body = render_source(proposals, names, hostchecks=checks)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    public = web.Application()
    public.router.add_get("/", page)
    add_route(public, metrics)
    return public
