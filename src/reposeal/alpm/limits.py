"""Hard limits applied to every byte reposeal reads from outside: the archive limits below,
and every other bound a part applies (at the end of this module).

They bound memory and time on hostile input (tar bombs, endless streams, absurd headers).
The defaults fit the largest real repositories (Arch's extra.files is well under these).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits for reading archives; raise a field to accept a larger, trusted input."""

    max_package_bytes: int = 16 << 30  # compressed package file
    max_unpacked_bytes: int = 64 << 30  # sum of member sizes declared in one package
    max_members: int = 2_000_000  # tar members in one archive
    max_path_bytes: int = 4096  # one member's path
    max_pkginfo_bytes: int = 1 << 20  # .PKGINFO and .BUILDINFO
    max_extended_header_bytes: int = 1 << 20  # one pax or GNU long-name header
    max_db_bytes: int = 1 << 30  # compressed database file
    max_db_unpacked_bytes: int = 8 << 30  # decompressed database tar
    max_entry_file_bytes: int = 256 << 20  # one desc or files entry inside a database
    max_signature_bytes: int = 16384  # a detached signature (repo-add's limit)
    # one line of a desc or files entry: libalpm reads lines of at most 512 KiB (be_sync.c)
    # and fails the whole database on a longer one; every reader and writer here holds to it
    max_desc_line_bytes: int = 512 << 10


DEFAULT_LIMITS = Limits()


# Limits on what each part reads from outside, by the module that applies them (sizes in
# bytes unless said otherwise). One place, so that a reviewer sees every bound at once.

# alpm.names: a package name or version (libalpm keeps them in fixed PATH_MAX buffers)
MAX_NAME = 255
MAX_VERSION = 255
# cli.config
MAX_CONFIG_BYTES = 1 << 20
# enclave.channel
MAX_FDS = 64  # a small job's files, all at once
# enclave.rehearsal
MAX_LAG = 1000  # entries the mirror may be behind the live log and still be compared
# enclave.sandbox
MAX_WORKER_RESULT = 2 << 30  # a whole files database, written anew (adoption)
MAX_NAMES = 200_000
MAX_BLOBS = 8
MAX_REQUEST = 256 << 20  # a worker's request or decision (reasons of a large job)
# enclave.transition, repo.adoption
MAX_CHANGES = 20_000  # names in one transition
MAX_PACKAGER_SIG = 16 << 10
# enclave.worker_io
MAX_EVIDENCE_FILES = 40_000  # statements in one job (two a package: a build, an approval)
MAX_EVIDENCE_BYTES = 64 << 20  # statements and signature files in one job, all together
# enclave.zygote
MAX_REPLY = 1 << 20
MAX_START = 64 << 20  # the names in a large job's folders
# evidence.statements
MAX_STATEMENT_BYTES = 4 << 20
MAX_SIG_FILE_BYTES = 1 << 20  # the signatures beside one statement, all signers together
# openpgp.verify
MAX_SIGNATURE_BYTES = 16384
MAX_KEYRING_BYTES = 64 << 20
# protocol.jobformat
MAX_ARCHIVE = 256 << 20  # a commit's tree, as the source machine sends it to builders
MAX_PUSH_BYTES = 512 << 10  # log entries per push from the enclave (the JSON limit is 1 MiB)
# repo.bridge
MAX_BLOB = 4 << 30
MAX_JSON = 1 << 20
MAX_JOB_RESULT = 256 << 20
MAX_INLINE = 4 << 20  # small files handed out with the job, in all
# repo.dbupdate
MAX_INDEX_BYTES = 64 << 20
# repo.intake
MAX_STATEMENT = 64 << 10
MAX_SIGNATURES = 1 << 20
# repo.logmirror
MAX_FILES_BYTES = 512 << 20  # the files one push of entries names (records of big databases)
# repo.service
MAX_HEADER = 1 << 20
# repo.witnessing
MAX_ANSWER = 64 << 10
# source.gitrepo
MAX_PKGBUILD = 1 << 20
# enclave.pkgbuilds, repo.intake: an approved PKGBUILD's text, published for all to read
MAX_PKGBUILD_TEXT = 512 << 10  # base64 in a statement push, within the bridge's 1 MiB
MAX_DIFF = 4 << 20
MAX_COMMIT_OBJECT = 1 << 20
# source.service
MAX_SOURCE_BODY = 1 << 20
MAX_REPORT_FILES = 100_000
# translog.checkpoint
MAX_NOTE_BYTES = 1 << 20
# translog.proof
MAX_PROOF_BYTES = 1 << 20
# translog.cosignature: C2SP tlog-cosignature timestamps are positive 64-bit signed seconds
MAX_TIMESTAMP = (1 << 63) - 1
# translog.published
MAX_SKEW = 3600.0  # seconds a cosignature's time may be ahead of this machine's clock
MAX_TILE = 256 * (2 + (64 << 10))  # a full entry-bundle tile: TILE_WIDTH entries of 64 KiB
MAX_DB = 256 << 20
MAX_SMALL = 1 << 20
# translog.store
MAX_ENTRY_BYTES = 65535  # C2SP entry bundles use a 16-bit length
# translog.witnesspolicy
MAX_POLICY_BYTES = 64 << 10
# witness.protocol
MAX_WITNESS_BODY = 64 << 10
MAX_PROOF_LINES = 63
