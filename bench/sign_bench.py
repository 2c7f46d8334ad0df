#!/usr/bin/env python3
"""Signatures per second for every signing backend, beside `gpg --detach-sign`, same run.

Inputs: 1 KiB and 100 MiB. The 100 MiB rate is compared with the machine's SHA-512
throughput (hashlib, i.e. OpenSSL), the floor for any OpenPGP signature over SHA-512.
Targets (issue 3): soft >= 5x gpg's signatures/s on 1 KiB; on 100 MiB every backend within
20% of SHA-512 throughput. Run by hand: `.venv/bin/python bench/sign_bench.py`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reposeal.openpgp import spec as specs

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def rate(fn: Callable[[], object], seconds: float = 2.0, max_runs: int = 5000) -> float:
    fn()  # warm up
    runs, start = 0, time.perf_counter()
    while runs < max_runs and time.perf_counter() - start < seconds:
        fn()
        runs += 1
    return runs / (time.perf_counter() - start)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="reposeal-signbench-"))
    gnupghome = work / "gnupg"
    gnupghome.mkdir(mode=0o700)
    (work / "tokens").mkdir()
    (work / "softhsm2.conf").write_text(f"directories.tokendir = {work / 'tokens'}\n")
    os.environ.update(
        SOFTHSM2_CONF=str(work / "softhsm2.conf"),
        REPOSEAL_PKCS11_PIN="1234",
        GNUPGHOME=str(gnupghome),
    )
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "123456",
        ],
        check=True,
        capture_output=True,
    )
    small = b"x" * 1024
    big = work / "big.bin"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    try:

        def sha512_once() -> None:
            h = hashlib.sha512()
            with open(big, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)

        sha_rate = rate(sha512_once, 3.0, 5)  # 100 MiB inputs per second
        specs_to_run = {
            "soft (ed25519)": f"soft:{work / 'soft.key'}",
            "gpg (ed25519)": "gpg:",
            "pkcs11 (ed25519)": f"pkcs11:token=bench;object=ed?module-path={SOFTHSM}",
            "pkcs11 (rsa4096)": f"pkcs11:token=bench;object=rsa?module-path={SOFTHSM}",
        }
        rows = []
        fpr = ""
        for label, spec in specs_to_run.items():
            algo = "rsa4096" if "rsa" in label else "ed25519"
            fpr_new = specs.generate(spec, f"bench {label} <b@x>", algo, gnupghome)
            if spec == "gpg:":
                spec = f"gpg:{fpr_new}"
                fpr = fpr_new
            signer = specs.signer_from_spec(spec, gnupghome)

            def sign_small(s: specs.Signer = signer) -> bytes:
                return s.sign_detached(io.BytesIO(small))

            def sign_big(s: specs.Signer = signer) -> bytes:
                with open(big, "rb") as f:
                    return s.sign_detached(f)

            rows.append((label, rate(sign_small), rate(sign_big, 3.0, 5)))

        def gpg_cli(path: Path) -> None:
            subprocess.run(
                [
                    "gpg",
                    "--batch",
                    "--yes",
                    "--local-user",
                    fpr,
                    "--detach-sign",
                    "--output",
                    str(work / "out.sig"),
                    str(path),
                ],
                check=True,
                capture_output=True,
            )

        (work / "small.bin").write_bytes(small)
        gpg_small = rate(lambda: gpg_cli(work / "small.bin"))
        gpg_big = rate(lambda: gpg_cli(big), 3.0, 5)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupghome), "--kill", "all"], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nsignatures per second ({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}); "
        f"SHA-512 alone: {sha_rate:.2f} x 100 MiB/s ({sha_rate * 100:.0f} MiB/s)\n"
    )
    print("| backend | 1 KiB sig/s | vs gpg CLI | 100 MiB sig/s | vs SHA-512 |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| `gpg --detach-sign` (CLI) | {gpg_small:.0f} | 1.0x | {gpg_big:.2f} | "
        f"{gpg_big / sha_rate:.0%} |"
    )
    for label, s_rate, b_rate in rows:
        print(
            f"| {label} | {s_rate:.0f} | {s_rate / gpg_small:.1f}x | {b_rate:.2f} | "
            f"{b_rate / sha_rate:.0%} |"
        )


if __name__ == "__main__":
    main()
