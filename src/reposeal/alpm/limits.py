"""Hard limits applied to every byte reposeal reads from outside.

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
