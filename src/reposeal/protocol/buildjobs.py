"""A build job, as the source machine hands it to builders: which commit of which pkgbase
to build for which repository, with the SOURCE_DATE_EPOCH that makes builds reproducible.

The builder reads it as hostile input (the source machine may be compromised, the network
may lie): every field is checked before any is used, since a pkgbase names a folder and a
commit goes into the statement the builder signs.
"""

from __future__ import annotations

from dataclasses import dataclass

from reposeal.alpm.names import arch_field, name_field
from reposeal.errors import InputError, ReposealError
from reposeal.protocol.jobformat import COMMIT, JOB_ID

FIELDS = ("id", "repo", "pkgbase", "commit", "source_date_epoch", "arch")


class BuildJobError(InputError):
    """A build job that does not hold up; the message says which field."""


@dataclass(frozen=True, slots=True)
class BuildJob:
    id: str
    repo: str
    pkgbase: str
    commit: str  # a full git commit id
    source_date_epoch: int
    arch: str = ""  # "": any architecture

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_json(cls, doc: object) -> BuildJob:
        """The job in ``doc``, each field checked; BuildJobError otherwise."""
        what = "a malformed job from the source machine"
        if not isinstance(doc, dict):
            raise BuildJobError(f"{what}: not a JSON object")
        unknown = sorted(set(doc) - set(FIELDS))[:3]
        if unknown:
            raise BuildJobError(f"{what}: unknown fields {', '.join(map(str, unknown))}")
        job_id, commit, epoch = doc.get("id"), doc.get("commit"), doc.get("source_date_epoch")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise BuildJobError(f"{what}: the id is 1-128 letters, digits and ._:-")
        if not isinstance(commit, str) or not COMMIT.fullmatch(commit):
            raise BuildJobError(f"{what}: the commit is not a full git commit id")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 1 << 63:
            raise BuildJobError(f"{what}: source_date_epoch is not a time in seconds")
        arch = doc.get("arch")
        try:
            return cls(
                job_id,
                name_field(doc.get("repo")),
                name_field(doc.get("pkgbase")),
                commit,
                epoch,
                "" if arch is None or arch == "" else arch_field(arch),
            )
        except ReposealError as exc:
            raise BuildJobError(f"{what}: {exc.message}") from None
