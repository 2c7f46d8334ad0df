"""Build a PKGBUILD with the real makepkg, as an unprivileged user, reproducibly.

makepkg refuses to run as root; when we are root we build as a dedicated system user.
``SOURCE_DATE_EPOCH`` fixed makes two builds of the same PKGBUILD byte-identical.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from reposeal.errors import ReposealError, ToolMissingError

DEFAULT_BUILD_USER = "reposeal-build"


class BuildError(ReposealError):
    """makepkg failed; the message carries the end of its log."""


def ensure_build_user(name: str = DEFAULT_BUILD_USER) -> str:
    """Create the unprivileged build user if it does not exist (needs root)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise ToolMissingError(
                f"build user {name!r} does not exist; create it as root"
            ) from None
        subprocess.run(
            ["useradd", "--system", "--create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    return name


def build(
    workdir: Path,
    *,
    source_date_epoch: int,
    pkgext: str = ".pkg.tar.zst",
    user: str = DEFAULT_BUILD_USER,
) -> list[Path]:
    """Run makepkg in ``workdir`` (which holds a PKGBUILD); return the packages it made.

    ``workdir`` and its parents must be reachable by ``user`` when running as root.
    """
    if shutil.which("makepkg") is None:
        raise ToolMissingError("makepkg is not installed (Debian: apt-get install makepkg)")
    env_args = [f"SOURCE_DATE_EPOCH={source_date_epoch}", f"PKGEXT={pkgext}"]
    cmd = ["makepkg", "--nodeps", "--force", "--noconfirm", "--noprogressbar"]
    if os.geteuid() == 0:
        ensure_build_user(user)
        shutil.chown(workdir, user)
        cmd = ["runuser", "-u", user, "--", "env", *env_args, *cmd]
    else:
        cmd = ["env", *env_args, *cmd]
    before = set(workdir.iterdir())
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise BuildError(f"makepkg failed ({proc.returncode}):\n{tail}", path=workdir)
    built = sorted(p for p in set(workdir.iterdir()) - before if ".pkg.tar" in p.name)
    if not built:
        built = sorted(p for p in workdir.iterdir() if p.name.endswith(pkgext))
    return built
