"""The one interface every signing backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class SignOptions:
    """What goes into a signature besides the digest.

    ``expires_in``: seconds after creation when the signature expires (pacman refuses an
    expired database signature, even for its cached copy). ``notations``: human-readable
    OpenPGP notations (names must contain '@'), e.g. the policy version and log index.
    """

    expires_in: int | None = None
    notations: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.expires_in is not None and not 0 < self.expires_in < 2**32:
            raise ValueError("signature lifetime must be between 1 second and 136 years")
        for name, value in self.notations:
            if "@" not in name or "=" in name or not name.isprintable():
                raise ValueError(f"notation name {name!r} must look like name@domain")
            if not value.isprintable():
                raise ValueError(f"notation {name!r} has an unprintable value")


NO_OPTIONS = SignOptions()


class Signer(Protocol):
    """Makes binary OpenPGP v4 detached signatures."""

    @property
    def fingerprint(self) -> str:
        """Primary key fingerprint (uppercase hex) of the signing key."""
        ...

    def certificate(self) -> bytes:
        """The signing key's public certificate (binary), to check our own signatures."""
        ...

    def sign_detached(self, stream: BinaryIO, options: SignOptions = NO_OPTIONS) -> bytes:
        """Sign everything readable from ``stream``; return the binary signature packet."""
        ...
