"""Where the files of one repository database live on disk.

Layout (repo-add's, plus generations for atomic publication)::

    NAME.db.tar.gz      -> NAME.current/NAME.db.tar.gz       (what pacman downloads as NAME.db)
    NAME.db.tar.gz.sig  -> NAME.current/NAME.db.tar.gz.sig
    NAME.db             -> NAME.db.tar.gz    NAME.db.sig -> NAME.db.tar.gz.sig
    NAME.files...       likewise
    NAME.current        -> NAME.generations/000042           (one rename switches all four)
    NAME.generations/000042/{db,files}{,.sig}                 (immutable once published)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reposeal.alpm.compression import SUFFIX_TO_KIND
from reposeal.alpm.names import check_name
from reposeal.errors import InputError


def _repository_folder(folder: Path, name: str) -> Path:
    """The repository's folder for a database path anywhere inside it: tools that resolve
    links (aurutils uses ``realpath``) hand over ``NAME.generations/000042/`` or
    ``NAME.current/``; writing there would nest generations and rewrite an immutable one."""
    if folder.parent.name == f"{name}.generations" and folder.name.isdigit():
        return folder.parent.parent
    if folder.name in (f"{name}.current", f"{name}.generations"):
        return folder.parent
    return folder


@dataclass(frozen=True, slots=True)
class RepoPaths:
    directory: Path
    name: str
    suffix: str  # "" or ".gz", ".zst", ".xz", ".bz2", ".lz4"

    @classmethod
    def from_db_path(cls, db_path: Path) -> RepoPaths:
        """Parse ``DIR/NAME.db.tar[.EXT]`` as repo-add does."""
        base = db_path.name
        if ".db.tar" not in base:
            raise InputError(
                "does not have a valid database archive extension "
                "(expected NAME.db.tar.gz, NAME.db.tar.zst, ...)",
                path=db_path,
            )
        name, _, rest = base.partition(".db.tar")
        if rest not in SUFFIX_TO_KIND:
            raise InputError(f"unsupported database compression {rest!r}", path=db_path)
        try:
            check_name(name)
        except InputError:
            raise InputError(f"invalid repository name {name!r}", path=db_path) from None
        directory = _repository_folder(db_path.parent.resolve(), name)
        if not directory.is_dir():
            raise InputError("does not exist or is not a directory", path=directory)
        return cls(directory, name, rest)

    @property
    def compression(self) -> str:
        return SUFFIX_TO_KIND[self.suffix]

    def archive_name(self, which: str) -> str:
        """``NAME.db.tar.gz`` or ``NAME.files.tar.gz``."""
        return f"{self.name}.{which}.tar{self.suffix}"

    def archive(self, which: str) -> Path:
        return self.directory / self.archive_name(which)

    def link(self, which: str) -> Path:
        """The short name pacman downloads: ``NAME.db`` / ``NAME.files``."""
        return self.directory / f"{self.name}.{which}"

    @property
    def lock(self) -> Path:
        return self.directory / f"{self.archive_name('db')}.lck"  # repo-add's lock file

    @property
    def index_name(self) -> str:
        """The chunk index stored beside the archives in each generation."""
        return f"{self.name}.index.json"

    @property
    def current(self) -> Path:
        return self.directory / f"{self.name}.current"

    @property
    def generations(self) -> Path:
        return self.directory / f"{self.name}.generations"
