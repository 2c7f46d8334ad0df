"""The real ``gpg`` and its agent: keys in a keyring, on a smartcard or behind an HSM.

Driven through ``--status-fd`` so decisions rest on gpg's machine-readable status lines,
never on its human messages.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reposeal.errors import SigningError, ToolMissingError, VerificationError
from reposeal.openpgp.signer import NO_OPTIONS, SignOptions

_TIMEOUT = 120


def _gpg() -> str:
    path = shutil.which("gpg")
    if path is None:
        raise ToolMissingError("gpg is not installed (Debian: apt-get install gnupg)")
    return path


def _base_args(homedir: Path | None) -> list[str]:
    args = [_gpg(), "--batch", "--no-tty", "--status-fd", "2", "--with-colons"]
    if homedir is not None:
        args += ["--homedir", str(homedir)]
    return args


def _status(stderr: bytes) -> list[list[str]]:
    lines = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] "):
            lines.append(line[9:].split(" "))
    return lines


def _human(stderr: bytes) -> str:
    text = [
        ln for ln in stderr.decode("utf-8", "replace").splitlines() if not ln.startswith("[GNUPG:]")
    ]
    return "; ".join(t.strip() for t in text[-3:]) or "no message"


def secret_key_fingerprint(key: str | None, homedir: Path | None = None) -> str:
    """The fingerprint of the secret key ``key`` names (or of the default key)."""
    args = [*_base_args(homedir), "--list-secret-keys", "--fingerprint"]
    if key:
        args.append(key)
    proc = subprocess.run(args, capture_output=True, timeout=_TIMEOUT, check=False)
    fprs = []
    expect_fpr = False
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        cols = line.split(":")
        if cols[0] == "sec":
            expect_fpr = True
        elif cols[0] == "fpr" and expect_fpr:
            fprs.append(cols[9])
            expect_fpr = False
    if proc.returncode != 0 or not fprs:
        what = f"the key {key!r}" if key else "a secret key"
        raise ToolMissingError(
            f"{what} is not in the gpg keyring"
            f"{f' at {homedir}' if homedir else ''}: import it or choose another with --key"
        )
    return fprs[0]


def _regular_file_fd(stream: BinaryIO) -> int | None:
    """The descriptor of a stream that is a regular file read from its start, else None."""
    try:
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode) and stream.tell() == 0:
            return fd
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _feed(stream: BinaryIO, proc: subprocess.Popen[bytes]) -> None:
    """Copy ``stream`` to gpg's stdin in chunks, so large inputs never sit in memory."""
    assert proc.stdin is not None
    try:
        while chunk := stream.read(1 << 20):
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # gpg exited early; its status says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def _collect(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Read stdout and stderr fully without deadlocking on either pipe."""
    assert proc.stdout is not None and proc.stderr is not None
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()
    reader.join(_TIMEOUT)
    proc.wait(_TIMEOUT)
    return out, b"".join(err_chunks)


def generate_key(homedir: Path | None, user_id: str, algo: str = "ed25519") -> str:
    """Create an unprotected signing key in gpg's keyring; return its fingerprint."""
    args = [
        *_base_args(homedir),
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        user_id,
        algo,
        "sign,cert",
        "0",
    ]
    proc = subprocess.run(args, capture_output=True, timeout=_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise SigningError(f"gpg could not create the key: {_human(proc.stderr)}")
    created = [s[2] for s in _status(proc.stderr) if s[0] == "KEY_CREATED" and len(s) > 2]
    return created[-1] if created else secret_key_fingerprint(user_id, homedir)


@dataclass(frozen=True)
class GpgSigner:
    """Sign with the real gpg (``gpg --detach-sign``), as repo-add --sign does."""

    key: str | None = None
    homedir: Path | None = None
    concurrent = True  # gpg-agent serves several signing requests at once

    @functools.cached_property
    def fingerprint(self) -> str:
        if self._by_fingerprint:  # one gpg call fewer: the certificate names its primary
            import pysequoia

            return str(pysequoia.Cert.from_bytes(self._certificate).fingerprint).upper()
        return secret_key_fingerprint(self.key, self.homedir)

    @property
    def _by_fingerprint(self) -> bool:
        return bool(self.key and re.fullmatch(r"(0x)?[0-9A-Fa-f]{40}", self.key))

    def certificate(self) -> bytes:
        return self._certificate

    @functools.cached_property
    def _certificate(self) -> bytes:
        fpr = str(self.key) if self._by_fingerprint else self.fingerprint
        proc = subprocess.run(
            [*_base_args(self.homedir), "--export", fpr],
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise ToolMissingError(f"gpg cannot export the certificate of {fpr}")
        return proc.stdout

    def sign_detached(self, stream: BinaryIO, options: SignOptions = NO_OPTIONS) -> bytes:
        args = [*_base_args(self.homedir), "--detach-sign", "--no-armor", "--output", "-"]
        if options.expires_in is not None:
            args += ["--default-sig-expire", f"seconds={options.expires_in}"]
        for name, value in options.notations:
            args += ["--sig-notation", f"{name}={value}"]
        if self.key:
            args += ["--local-user", self.key]
        fd = _regular_file_fd(stream)
        if fd is not None:  # gpg reads the file itself: no copy through a pipe
            proc = subprocess.Popen(
                [*args, f"/dev/fd/{fd}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(fd,),
            )
            out, err = _collect(proc)
        else:
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            feeder = threading.Thread(target=_feed, args=(stream, proc), daemon=True)
            feeder.start()
            out, err = _collect(proc)
            feeder.join()
        if proc.returncode != 0 or not any(s[0] == "SIG_CREATED" for s in _status(err)):
            raise SigningError(f"gpg could not sign: {_human(err)}")
        return out


@dataclass(frozen=True)
class GoodSignature:
    fingerprint: str  # primary key fingerprint
    signing_fingerprint: str  # the (sub)key that made it
    created: int


def gpg_verify(
    data_path: Path, sig_path: Path, homedir: Path | None = None, extra: Sequence[str] = ()
) -> GoodSignature:
    """Verify a detached signature with the real gpg; raise VerificationError if not valid."""
    args = [*_base_args(homedir), *extra, "--verify", str(sig_path), str(data_path)]
    proc = subprocess.run(args, capture_output=True, timeout=_TIMEOUT, check=False)
    status = _status(proc.stderr)
    codes = {s[0]: s for s in status}
    if "VALIDSIG" in codes and "GOODSIG" in codes and proc.returncode == 0:
        v = codes["VALIDSIG"]
        return GoodSignature(
            fingerprint=v[10] if len(v) > 10 else v[1], signing_fingerprint=v[1], created=int(v[3])
        )
    if "EXPKEYSIG" in codes:
        reason = f"made by an expired key ({codes['EXPKEYSIG'][1]}); renew or replace the key"
    elif "REVKEYSIG" in codes:
        reason = f"made by a revoked key ({codes['REVKEYSIG'][1]}); re-sign with a valid key"
    elif "EXPSIG" in codes:
        reason = "the signature has expired; re-sign the database"
    elif "BADSIG" in codes:
        reason = "BAD signature: the file was modified after signing"
    elif "NO_PUBKEY" in codes or ("ERRSIG" in codes and codes["ERRSIG"][-2:-1] == ["9"]):
        reason = "signed by a key that is not in the keyring; import and trust the signer's key"
    elif "NODATA" in codes:
        reason = "the signature file holds no OpenPGP signature"
    else:
        reason = _human(proc.stderr)
    raise VerificationError(f"signature {sig_path.name} does not verify: {reason}", path=data_path)
