"""The files a log entry names beside the log (records, statements and their signature
files, policies, approved PKGBUILD texts), as every copy of the log keeps them: the
enclave's home, the repo machine's copy, the mirror, an auditor's copy. One rule for all
of them: a file is named by the sha256 of its bytes, except the signature files of entries
written before those were (``evidence/SHA256.json.sig``, named after their statement)."""

from __future__ import annotations

import re

# a path a log entry may name; nothing else is taken into a copy of the log
FILE_PATH = re.compile(
    r"(records|evidence|policies)/[0-9a-f]{64}\.json(\.sig)?|evidence/[0-9a-f]{64}\.sig"
    r"|pkgbuilds/[0-9a-f]{64}"
)


def named_digest(path: str) -> str | None:
    """The sha256 the file at ``path`` must have (None: an older signature file, not
    named by its own hash)."""
    base = path.rsplit("/", 1)[-1]
    return None if base.endswith(".json.sig") else base.split(".", 1)[0]
