"""The bridge's job format, shared by the repo machine and the enclave (no server code).

The enclave re-checks every field with these: the bridge belongs to the repo machine, which
it does not trust.
"""

from __future__ import annotations

import re

SHA256 = re.compile(r"[0-9a-f]{64}")
JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# where a job's file goes in the job folder; no traversal, no hidden names
JOB_PATH = re.compile(
    r"(policy\.json(\.sig)?|keyring\.pgp|packages/[A-Za-z0-9@_+-][A-Za-z0-9@._+-]*"
    r"|evidence/[A-Za-z0-9_-][A-Za-z0-9._-]*\.json(\.sig)?|evidence/[0-9a-f]{64}\.PKGBUILD)"
)
# a git commit id (SHA-1), as source jobs and statements name it
COMMIT = re.compile(r"[0-9a-f]{40}")
KINDS = ("transition", "refresh", "packages", "policy", "adopt")
# the fields a job may carry besides its files (the enclave checks each again)
FIELDS = ("id", "kind", "repo", "arch", "files", "parent", "add", "moves", "remove",
          "compression", "expect")  # fmt: skip
