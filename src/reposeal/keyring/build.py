"""The keyring package pacman users install to trust the repository's keys, the way
`archlinux-keyring` does it: ``/usr/share/pacman/keyrings/NAME.gpg`` (the keys),
``NAME-trusted`` (``FINGERPRINT:4:``, full owner trust: pacman-key locally signs them) and
``NAME-revoked`` (fingerprints pacman-key disables), applied by ``pacman-key --populate
NAME`` from the package's install script.

It is built from the signed policy: its current and next repository keys are trusted (both
during a rotation's overlap), its revoked ones revoked. When the policy names witnesses, the
package also carries ``/usr/share/reposeal/NAME-witnesses.policy`` (C2SP tlog-policy) for
`reposeal verify --witnesses`. The source folder this writes (a
PKGBUILD and the three files) goes into the PKGBUILD repositories like any package, so the
keyring is approved, built, signed and logged through the normal pipeline.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import textwrap
from pathlib import Path

from reposeal.alpm.names import check_name
from reposeal.errors import InputError
from reposeal.fsio import write_all
from reposeal.policy.document import Policy

SOURCE_DATE_EPOCH = 1_600_000_000  # fixed: two builds of one keyring are byte-identical

INSTALL = """\
post_upgrade() {{
  if usr/bin/pacman-key -l >/dev/null 2>&1; then
    usr/bin/pacman-key --populate {name}
  fi
}}

post_install() {{
  if [ -x usr/bin/pacman-key ]; then
    post_upgrade
  fi
}}
"""


def keyring_files(name: str, policy: Policy) -> dict[str, bytes]:
    """The three files of keyring ``name`` for ``policy`` (pure)."""
    trusted = [*policy.repo_keys("current").certs, *policy.repo_keys("next").certs]
    if not trusted:
        raise InputError(
            "the policy names no repository key: add one with `reposeal policy init "
            "--repository-key` (and have the admins sign the new version)"
        )
    revoked = policy.repo_keys("revoked").fingerprints()
    files = {
        f"{name}.gpg": b"".join(bytes(c) for c in trusted),
        f"{name}-trusted": "".join(f"{c.fingerprint.upper()}:4:\n" for c in trusted).encode(),
        f"{name}-revoked": "".join(f"{f}\n" for f in revoked).encode(),
    }
    if policy.witnesses:
        files[f"{name}-witnesses.policy"] = policy.witness_policy().render().encode()
    return files


def pkgbuild(name: str, version: int, files: dict[str, bytes], pkgrel: int = 1) -> str:
    sources = sorted(files)
    keyrings = [f for f in sources if not f.endswith(".policy")]
    policies = [f for f in sources if f.endswith(".policy")]
    witnesses = (
        f'\n          install -Dm644 -t "$pkgdir/usr/share/reposeal/" {" ".join(policies)}'
        if policies
        else ""
    )
    sums = " ".join(f"'{hashlib.sha256(files[f]).hexdigest()}'" for f in sources)
    return textwrap.dedent(
        f"""\
        # The {name} repository's signing keys (from policy version {version}).
        pkgname={name}-keyring
        pkgver={version}
        pkgrel={pkgrel}
        pkgdesc="The {name} repository's signing keys, for pacman-key --populate {name}"
        arch=(any)
        license=(custom:public-domain)
        install={name}-keyring.install
        source=({" ".join(sources)})
        sha256sums=({sums})

        package() {{
          install -Dm644 -t "$pkgdir/usr/share/pacman/keyrings/" {" ".join(keyrings)}{witnesses}
        }}
        """
    )


def write_source(out: Path, name: str, policy: Policy, pkgrel: int = 1) -> Path:
    """Write the keyring's PKGBUILD, install script and files into ``out``."""
    check_name(name)
    files = keyring_files(name, policy)
    everything = {out / n: data for n, data in files.items()}
    everything[out / "PKGBUILD"] = pkgbuild(name, policy.version, files, pkgrel).encode()
    everything[out / f"{name}-keyring.install"] = INSTALL.format(name=name).encode()
    out.mkdir(parents=True, exist_ok=True)
    write_all(everything)
    return out / "PKGBUILD"


def build_package(source: Path, dest: Path) -> Path:
    """Build the keyring package with the real makepkg (unprivileged); return it in
    ``dest``."""
    from reposeal.builder.makepkg import build

    with tempfile.TemporaryDirectory(prefix="reposeal-keyring-") as tmp:
        work = Path(tmp) / "build"
        shutil.copytree(source, work)
        Path(tmp).chmod(0o755)
        work.chmod(0o755)
        (built,) = build(work, source_date_epoch=SOURCE_DATE_EPOCH)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / built.name
        shutil.copy2(built, target)
        return target
