"""Which witnesses must cosign a checkpoint: C2SP tlog-policy files. Pure, no I/O.

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> <k|all|any> <member>...
    quorum <name|none>

Names are defined before use; duplicate keys and names are refused. ``satisfied`` says
whether a set of witnesses that validly cosigned meets the quorum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reposeal.alpm.limits import MAX_POLICY_BYTES
from reposeal.errors import InputError
from reposeal.translog.checkpoint import NoteVerifier
from reposeal.translog.cosignature import CosignerKey


class WitnessPolicyError(InputError):
    """A tlog-policy file that is malformed or can never be met."""


@dataclass(frozen=True)
class WitnessEntry:
    name: str
    key: CosignerKey
    url: str | None = None


@dataclass(frozen=True)
class WitnessPolicy:
    logs: tuple[NoteVerifier, ...] = ()
    witnesses: tuple[WitnessEntry, ...] = ()
    groups: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    quorum: str = "none"

    @property
    def keys(self) -> list[CosignerKey]:
        return [w.key for w in self.witnesses]

    def satisfied(self, cosigned: Iterable[str]) -> bool:
        """Do the witnesses named in ``cosigned`` (cosignature key names) meet the quorum?"""
        by_key = {w.key.name: w.name for w in self.witnesses}
        have = {by_key[n] for n in cosigned if n in by_key}
        return self._met(self.quorum, have)

    def _met(self, name: str, have: set[str]) -> bool:
        if name == "none":
            return True
        if name in self.groups:
            k, members = self.groups[name]
            return sum(self._met(m, have) for m in members) >= k
        return name in have

    def missing(self, cosigned: Iterable[str]) -> list[str]:
        """The witnesses that did not cosign (what to chase when the quorum is not met)."""
        done = set(cosigned)
        return [w.name for w in self.witnesses if w.key.name not in done]

    def render(self) -> str:
        lines = [f"log {v.encode()}" for v in self.logs]
        for w in self.witnesses:
            lines.append(" ".join(["witness", w.name, w.key.encode(), *([w.url] if w.url else [])]))
        for name, (k, members) in self.groups.items():
            lines.append(f"group {name} {k} {' '.join(members)}")
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


def k_of_n(witnesses: Iterable[WitnessEntry], k: int) -> WitnessPolicy:
    """The common case: any ``k`` of these witnesses."""
    ws = tuple(witnesses)
    if k == 0:
        return WitnessPolicy(witnesses=ws)
    if not 1 <= k <= len(ws):
        raise WitnessPolicyError(f"a quorum of {k} needs 1..{len(ws)} witnesses")
    return WitnessPolicy(witnesses=ws, groups={"witnesses": (k, tuple(w.name for w in ws))},
                         quorum="witnesses")  # fmt: skip


def parse(text: str) -> WitnessPolicy:
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise WitnessPolicyError("the witness policy is too large")
    logs: list[NoteVerifier] = []
    witnesses: list[WitnessEntry] = []
    groups: dict[str, tuple[int, tuple[str, ...]]] = {}
    quorum: str | None = None
    names: set[str] = set()
    publics: set[bytes] = set()
    for number, raw in enumerate(text.split("\n"), 1):
        words = raw.replace("\t", " ").split()
        if not words or words[0].startswith("#"):
            continue
        where = f"line {number}"
        kind, args = words[0], words[1:]
        try:
            if kind == "log" and len(args) in (1, 2):
                v = NoteVerifier.decode(args[0])
                if v.public in publics:
                    raise WitnessPolicyError(f"{where}: a duplicate key")
                publics.add(v.public)
                logs.append(v)
            elif kind == "witness" and len(args) in (2, 3):
                name, key = _new_name(args[0], names, where), CosignerKey.decode(args[1])
                if key.public in publics:
                    raise WitnessPolicyError(f"{where}: a duplicate key")
                publics.add(key.public)
                witnesses.append(WitnessEntry(name, key, args[2] if len(args) == 3 else None))
            elif kind == "group" and len(args) >= 3:
                name, members = _new_name(args[0], names, where), tuple(args[2:])
                for m in members:
                    if m not in names or m == name or m == "none":
                        raise WitnessPolicyError(f"{where}: {m!r} is not defined before")
                if len(set(members)) != len(members):
                    raise WitnessPolicyError(f"{where}: a member is named twice")
                k = _threshold(args[1], len(members), where)
                groups[name] = (k, members)
            elif kind == "quorum" and len(args) == 1 and quorum is None:
                if args[0] != "none" and args[0] not in names:
                    raise WitnessPolicyError(f"{where}: quorum {args[0]!r} is not defined")
                quorum = args[0]
            else:
                raise WitnessPolicyError(f"{where}: not a policy line: {raw.strip()[:60]!r}")
        except WitnessPolicyError:
            raise
        except InputError as exc:
            raise WitnessPolicyError(f"{where}: {exc.message}") from None
    if quorum is None:
        raise WitnessPolicyError("the witness policy has no quorum line (`quorum none` for none)")
    return WitnessPolicy(tuple(logs), tuple(witnesses), groups, quorum)


def _new_name(name: str, names: set[str], where: str) -> str:
    if name == "none" or name in names or not name.isprintable():
        raise WitnessPolicyError(f"{where}: {name!r} cannot be a name here (taken or reserved)")
    names.add(name)
    return name


def _threshold(word: str, n: int, where: str) -> int:
    if word == "all":
        return n
    if word == "any":
        return 1
    if not word.isdigit() or not 1 <= int(word) <= n:
        raise WitnessPolicyError(f"{where}: a threshold is all, any or 1..{n}, not {word!r}")
    return int(word)
