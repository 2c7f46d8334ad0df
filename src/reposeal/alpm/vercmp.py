"""pacman's version comparison, a faithful port of libalpm's ``alpm_pkg_vercmp``.

Pure and I/O free. It works on the UTF-8 bytes with C-locale character classes, exactly as
libalpm does, so every odd corner (separators of different lengths, alpha vs numeric
segments, missing pkgrel, empty epoch) gives the answer pacman gives.
"""

from __future__ import annotations

from functools import cmp_to_key

_DIGITS = frozenset(b"0123456789")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _ALPHA


def _rpmvercmp(a: bytes, b: bytes) -> int:
    """Compare one component (epoch, pkgver or pkgrel) the way rpm and libalpm do."""
    if a == b:
        return 0
    one = two = 0  # start of the current segment
    ptr1 = ptr2 = 0  # end of the previous segment
    la, lb = len(a), len(b)
    while one < la and two < lb:
        while one < la and a[one] not in _ALNUM:
            one += 1
        while two < lb and b[two] not in _ALNUM:
            two += 1
        if not (one < la and two < lb):
            break
        # separators of different lengths decide on their own
        if one - ptr1 != two - ptr2:
            return -1 if one - ptr1 < two - ptr2 else 1
        ptr1, ptr2 = one, two
        if a[ptr1] in _DIGITS:
            while ptr1 < la and a[ptr1] in _DIGITS:
                ptr1 += 1
            while ptr2 < lb and b[ptr2] in _DIGITS:
                ptr2 += 1
            isnum = True
        else:
            while ptr1 < la and a[ptr1] in _ALPHA:
                ptr1 += 1
            while ptr2 < lb and b[ptr2] in _ALPHA:
                ptr2 += 1
            isnum = False
        seg1, seg2 = a[one:ptr1], b[two:ptr2]
        if not seg2:
            # one numeric, the other alpha: numeric segments are newer
            return 1 if isnum else -1
        if isnum:
            seg1 = seg1.lstrip(b"0")
            seg2 = seg2.lstrip(b"0")
            if len(seg1) != len(seg2):
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return -1 if seg1 < seg2 else 1
        one, two = ptr1, ptr2
    if one >= la and two >= lb:
        return 0
    # a remaining alpha string never beats an empty one
    rest1_empty = one >= la
    if (rest1_empty and b[two] not in _ALPHA) or (not rest1_empty and a[one] in _ALPHA):
        return -1
    return 1


def _parse_evr(evr: bytes) -> tuple[bytes, bytes, bytes | None]:
    """Split ``[epoch:]pkgver[-pkgrel]`` as libalpm's parseEVR does."""
    s = 0
    while s < len(evr) and evr[s] in _DIGITS:
        s += 1
    if s < len(evr) and evr[s] == ord(":"):
        epoch = evr[:s] or b"0"
        rest = evr[s + 1 :]
    else:
        epoch = b"0"
        rest = evr
    # libalpm searches the release separator from the end of the digits, i.e. in `rest`
    # plus the (empty or non-existent) part before ':'; `rest` is what matters.
    dash = rest.rfind(b"-")
    if dash == -1:
        return epoch, rest, None
    return epoch, rest[:dash], rest[dash + 1 :]


def vercmp(a: str, b: str) -> int:
    """Return -1, 0 or 1 as pacman's ``vercmp a b`` would print."""
    if a == b:
        return 0
    ab, bb = a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    e1, v1, r1 = _parse_evr(ab)
    e2, v2, r2 = _parse_evr(bb)
    ret = _rpmvercmp(e1, e2)
    if ret == 0:
        ret = _rpmvercmp(v1, v2)
        if ret == 0 and r1 is not None and r2 is not None:
            ret = _rpmvercmp(r1, r2)
    return ret


version_key = cmp_to_key(vercmp)
"""A sort key ordering version strings as pacman does: ``sorted(vs, key=version_key)``."""
