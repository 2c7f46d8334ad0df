"""The one interface every signing backend implements."""

from __future__ import annotations

from typing import BinaryIO, Protocol


class Signer(Protocol):
    """Makes binary OpenPGP v4 detached signatures."""

    @property
    def fingerprint(self) -> str:
        """Primary key fingerprint (uppercase hex) of the signing key."""
        ...

    def certificate(self) -> bytes:
        """The signing key's public certificate (binary), to check our own signatures."""
        ...

    def sign_detached(self, stream: BinaryIO) -> bytes:
        """Sign everything readable from ``stream``; return the binary signature packet(s)."""
        ...
