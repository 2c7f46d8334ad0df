"""The structure the design promises, checked by walking the source: no role imports another
role (what roles share lives in ``protocol/`` and the rooms no role owns), the shared rooms
import no role, and every limit on outside input lives in ``alpm.limits``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "reposeal"
ROLES = ("enclave", "repo", "source", "builder", "witness", "client")
# the front doors: they wire roles together, and no role imports them
TOOLS = ("cli", "keyring")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every reposeal module a file imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(n, m) for n, m in out if m.startswith("reposeal.")]


def _room(module: str) -> str:
    return module.split(".")[1]


def _files() -> list[tuple[str, Path]]:
    return [(p.relative_to(SRC).parts[0], p) for p in sorted(SRC.rglob("*.py"))]


def test_no_role_imports_another_role() -> None:
    arrows = [
        f"{p.relative_to(SRC)}:{line} imports {module}"
        for room, p in _files()
        if room in ROLES
        for line, module in _imports(p)
        if _room(module) in ROLES + TOOLS and _room(module) != room
    ]
    assert not arrows, "a role imports another role:\n" + "\n".join(arrows)


def test_the_shared_rooms_import_no_role() -> None:
    shared = {room for room, _ in _files()} - set(ROLES) - set(TOOLS)
    arrows = [
        f"{p.relative_to(SRC)}:{line} imports {module}"
        for room, p in _files()
        if room in shared or p.parent == SRC
        for line, module in _imports(p)
        if _room(module) in ROLES + TOOLS
    ]
    assert not arrows, "a shared room imports a role:\n" + "\n".join(arrows)


def test_every_limit_lives_in_alpm_limits() -> None:
    defined = re.compile(r"^\s*(MAX_[A-Z_]+)\s*[:=]", re.MULTILINE)
    elsewhere = [
        f"{p.relative_to(SRC)}: {name}"
        for _, p in _files()
        if p != SRC / "alpm" / "limits.py"
        for name in defined.findall(p.read_text())
    ]
    assert not elsewhere, "limits defined outside alpm.limits:\n" + "\n".join(elsewhere)


def test_the_tile_limit_fits_a_full_tile() -> None:
    from reposeal.alpm.limits import MAX_ENTRY_BYTES, MAX_TILE
    from reposeal.translog.tiles import TILE_WIDTH

    assert MAX_TILE == TILE_WIDTH * (2 + MAX_ENTRY_BYTES + 1)


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from reposeal.repo.lock import x\n")
    assert (2, "reposeal.repo.lock") in _imports(f)
