"""Driving the real tools (gpg, pacman-key, makepkg, repo-add, vercmp) from tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

from reposeal.builder.makepkg import build as makepkg_build
from reposeal.openpgp.gpg import generate_key

SOURCE_DATE_EPOCH = "1700000000"


def run(args: list[str], check: bool = True, **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(args, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} failed ({proc.returncode}):\n{proc.stdout.decode(errors='replace')}\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc  # type: ignore[no-any-return]


def run_text(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def gpg_generate(home: Path, uid: str) -> str:
    return generate_key(home, uid)


def gpg_sign_file(home: Path, fingerprint: str, path: Path) -> Path:
    """A detached binary signature ``PATH.sig``, as packagers make them."""
    sig = path.with_name(path.name + ".sig")
    run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--yes",
            "--local-user",
            fingerprint,
            "--detach-sign",
            "--no-armor",
            "--output",
            str(sig),
            str(path),
        ]
    )
    return sig


def gpg_kill(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


PKGBUILDS = {
    "hello-1.0": ("hello", "1.0", "1", "A greeting", "", "hello 1.0"),
    "hello-1.1": ("hello", "1.1", "1", "A greeting, improved", "", "hello 1.1"),
    "world-2.0": ("world", "2.0", "1", "The world", "hello", "world 2.0"),
}


def pkgbuild(name: str, ver: str, rel: str, desc: str, depends: str, content: str) -> str:
    return textwrap.dedent(
        f"""\
        pkgname={name}
        pkgver={ver}
        pkgrel={rel}
        pkgdesc="{desc}"
        arch=(any)
        license=(MIT)
        depends=({depends})
        package() {{
          install -Dm644 /dev/stdin "$pkgdir/usr/share/{name}/message" <<< "{content}"
          mkdir -p "$pkgdir/usr/share/doc/{name}"
          echo "docs of {name}" > "$pkgdir/usr/share/doc/{name}/README"
        }}
        """
    )


def makepkg(workdir: Path, text: str, pkgext: str = ".pkg.tar.zst") -> Path:
    """Build one PKGBUILD with the real makepkg as an unprivileged user; return the package."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "PKGBUILD").write_text(text)
    os.chmod(workdir, 0o755)
    built = makepkg_build(workdir, source_date_epoch=int(SOURCE_DATE_EPOCH), pkgext=pkgext)
    assert len(built) == 1, built
    return built[0]


def makepkg_all(out: Path) -> dict[str, Path]:
    """Build every PKGBUILDS entry in a world-readable scratch folder; copy results to out."""
    result = {}
    scratch = Path(tempfile.mkdtemp(prefix="reposeal-makepkg-"))
    try:
        os.chmod(scratch, 0o755)
        for key, spec in PKGBUILDS.items():
            pkg = makepkg(scratch / key, pkgbuild(*spec))
            dest = out / pkg.name
            shutil.copy2(pkg, dest)
            result[key] = dest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str = "the service", tries: int = 300) -> None:
    import socket
    import time

    for _ in range(tries):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not start on port {port}")


class WitnessProcess:
    """`reposeal witness serve` on a free port of 127.0.0.1, stopped or killed at will."""

    def __init__(self, folder: Path, name: str, logs: list[str]) -> None:
        import sys

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.name, self.logs = folder, name, logs
        stem = name.replace("/", "_")
        self.key, self.db = folder / f"{stem}.key", folder / f"{stem}.sqlite"
        made = subprocess.run(
            [sys.executable, "-m", "reposeal.cli", "witness", "keygen", "--name", name,
             "-o", str(self.key)], capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.vkey = made.stdout.strip()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WitnessProcess:
        import sys

        cmd = [sys.executable, "-m", "reposeal.cli", "witness", "serve", "--db", str(self.db),
               "--key", str(self.key), "--listen", f"127.0.0.1:{self.port}"]  # fmt: skip
        for log in self.logs:
            cmd += ["--log", log]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        wait_port(self.port, f"witness {self.name}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
