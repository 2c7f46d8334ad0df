"""`repo move PKGBASE FROM TO`: a pkgbase goes up a stability layer (staging -> testing ->
stable), all its split packages together, the way dbscripts' db-move does it.

The layers are the policy's: a repository's ``may_move_to`` lists every layer above it. A
move must keep them in order:

- FROM holds the pkgbase, and the policy lets FROM move to TO;
- no layer between FROM and TO holds it (a move never jumps over one);
- TO is never left newer than a layer below it that holds the pkgbase, and never gets an
  older version than it has.

A move is two transitions per architecture, each signed by the enclave on its own rules:
TO gains the very files FROM has (signed already; the enclave accepts them without new
evidence because the policy allows the move), then, once TO is published, FROM loses them
(the enclave accepts a removal without a quorum once a layer above has that version). In
between, the packages are in both: pacman never sees them vanish.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reposeal.alpm.desc import single
from reposeal.alpm.syncdb import read_entries
from reposeal.alpm.vercmp import vercmp
from reposeal.errors import RefusedError
from reposeal.policy.document import Policy
from reposeal.repo.plans import CyclePlan

if TYPE_CHECKING:
    from reposeal.repo.cycle import Machine

MOVE = "(move)"  # how a move is named among a cycle's sources


@dataclass(frozen=True)
class Move:
    """A pkgbase moving from one stability layer to the next, as requested (the cycles
    carry it out on every architecture of ``frm``)."""

    id: str
    pkgbase: str
    frm: str
    to: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "pkgbase": self.pkgbase, "from": self.frm, "to": self.to}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> Move:
        """A move as the cycles' records keep it (their own rows, written by ``to_json``)."""
        return cls(str(doc["id"]), str(doc["pkgbase"]), str(doc["from"]), str(doc["to"]))


@dataclass(frozen=True)
class Held:
    """What one repository/architecture holds of a pkgbase: its version, and each split
    package's file name and sha256."""

    version: str
    files: dict[str, tuple[str, str]]  # pkgname -> (file name, sha256)


def layer_problems(
    pkgbase: str, frm: str, to: str, policy: Policy, held: Mapping[str, Held | None]
) -> list[str]:
    """Why moving ``pkgbase`` from ``frm`` to ``to`` would break the layers (empty: it may
    move). ``held``: what each repository of the policy holds of it, for one architecture.
    Pure."""
    src, dst = policy.rule(frm), policy.rule(to)
    if src is None or dst is None:
        unknown = frm if src is None else to
        return [f"{unknown} is not a repository of the policy"]
    if to not in src.may_move_to:
        above = ", ".join(src.may_move_to) or "none"
        return [f"the policy does not let {frm} move to {to} (layers above {frm}: {above})"]
    moving = held.get(frm)
    if moving is None:
        return [f"{frm} does not hold {pkgbase}"]
    problems = []
    for layer in src.may_move_to:
        rule = policy.rule(layer)
        there = held.get(layer)
        if layer != to and rule is not None and to in rule.may_move_to and there is not None:
            problems.append(
                f"{layer} holds {pkgbase} {there.version}, between {frm} and {to}: move it "
                f"from {layer} first (a move never jumps over a layer)"
            )
    for rule in policy.repos:
        there = held.get(rule.name)
        between = rule.name in src.may_move_to  # reported above already
        if rule.name == frm or to not in rule.may_move_to or there is None or between:
            continue
        if vercmp(there.version, moving.version) < 0:
            problems.append(
                f"{rule.name} holds an older {pkgbase} {there.version}: {to} would be newer "
                f"than {rule.name}, a layer below it"
            )
    current = held.get(to)
    if current is not None and vercmp(current.version, moving.version) > 0:
        problems.append(f"{to} holds a newer {pkgbase} {current.version} than {moving.version}")
    return problems


def held_in(db: Path, pkgbase: str) -> Held | None:
    """What the published database ``db`` holds of ``pkgbase`` (None: nothing)."""
    if not db.exists():
        return None
    files: dict[str, tuple[str, str]] = {}
    version = None
    for name, e in read_entries(db, None).items():
        f = e.fields()
        base = f.get("BASE", [name])
        if (base[0] if base else name) != pkgbase:
            continue
        where = f"entry {e.dirname}"
        files[name] = (single(f, "FILENAME", where), single(f, "SHA256SUM", where))
        version = e.version
    return None if version is None else Held(version, files)


class MoveRefusedError(RefusedError):
    """A move that would break the order of the stability layers."""


def request_move(m: Machine, pkgbase: str, frm: str, to: str, *, debug: bool = True) -> list[Move]:
    """Check a move on every architecture of FROM and record it (and its -debug twin's,
    when both layers have one and it holds the pkgbase's debug packages); the update cycle
    carries it out. Raises MoveRefusedError, recording nothing, when the layers forbid it."""
    policy = m.policy
    src = policy.rule(frm)
    arches = sorted(src.arches) if src is not None else []
    problems: list[str] = []
    moves = []
    for arch in arches or ["-"]:
        held = {r.name: held_in(m.db_path(r.name, arch), pkgbase) for r in policy.repos}
        problems += [f"{arch}: {p}" for p in layer_problems(pkgbase, frm, to, policy, held)]
    if problems:
        raise MoveRefusedError(problems)
    stamp = f"{time.time():.6f}"
    moves.append(Move(f"{pkgbase}-{frm}-{to}-{stamp}", pkgbase, frm, to))
    twin = (f"{frm}-debug", f"{to}-debug")
    if (
        debug
        and policy.rule(twin[0])
        and policy.rule(twin[1])
        and any(held_in(m.db_path(twin[0], a), pkgbase) for a in arches)
    ):
        moves.append(Move(f"{moves[0].id}-debug", pkgbase, twin[0], twin[1]))
    for move in moves:
        m.cycles.add_move(move)
    return moves


def plan_moves(m: Machine) -> list[tuple[str, str, CyclePlan]]:
    """The cycles pending moves need now, as (repo, arch, plan): TO gains the files, and
    after TO is published, FROM loses them."""
    out: list[tuple[str, str, CyclePlan]] = []
    for move in m.cycles.moves():
        frm, to, base, mid = move.frm, move.to, move.pkgbase, move.id
        rule = m.policy.rule(frm)
        for arch in sorted(rule.arches) if rule else []:
            if m.cycles.is_published(frm, arch, MOVE, mid):
                continue  # this architecture is done
            if m.cycles.has_failed(to, arch, mid) or m.cycles.has_failed(frm, arch, mid):
                continue  # refused by the enclave: not tried again by itself
            source = ((MOVE, str(mid)),)
            if not m.cycles.is_published(to, arch, MOVE, mid):
                held = held_in(m.db_path(frm, arch), base)
                if held is None:
                    continue  # nothing of it here
                pool = m.db_path(frm, arch).parent
                packages, signatures = {}, {}
                for filename, sha in held.files.values():
                    m.queue.keep_blob((pool / filename).read_bytes())
                    packages[filename] = sha
                    sig = (pool / (filename + ".sig")).read_bytes()
                    signatures[filename] = base64.b64encode(sig).decode()
                plan = CyclePlan(source, packages, moved_from=frm,
                                 names=tuple(sorted(held.files)),
                                 package_signatures=signatures)  # fmt: skip
                out.append((to, arch, plan))
            else:
                names = m.cycles.moved_names(to, arch, mid)
                plan = CyclePlan(source, remove=tuple(names))
                out.append((frm, arch, plan))
    return out
