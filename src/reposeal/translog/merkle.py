"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs. Pure, no I/O.

Leaves hash as SHA-256(0x00 || data), interior nodes as SHA-256(0x01 || left || right).
Proof *generation* works over any ``NodeSource`` (the log stores a complete subtree hash
for every aligned range, so proofs cost O(log n) lookups); *verification* is the algorithm
of RFC 9162 §2.1.3.2 and §2.1.4.2 and needs nothing but hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from reposeal.errors import InputError

HASH_SIZE = 32


class ProofError(InputError):
    """A Merkle proof that does not prove what it claims (or is malformed)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()

# (start, size) -> hash of the subtree of leaves [start, start+size); size is a power of two
# and start a multiple of it (a "perfect" subtree), as the log stores them.
PerfectSubtree = Callable[[int, int], bytes]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962: the largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(perfect: PerfectSubtree, start: int, size: int) -> bytes:
    """MTH of leaves [start, start+size) from perfect subtrees (O(log size) lookups)."""
    if size == 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0 and start % size == 0:
        return perfect(start, size)
    k = _largest_power_of_two_below(size)
    return node_hash(subtree_root(perfect, start, k), subtree_root(perfect, start + k, size - k))


def leaf_hashes(entries: Sequence[bytes]) -> list[bytes]:
    sha = hashlib.sha256
    return [sha(b"\x00" + e).digest() for e in entries]


def root_of_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes, level by level: pairs hashed left to right, an odd
    last node carried up unchanged, which is RFC 6962's split at the largest power of two."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha = hashlib.sha256  # inlined node_hash: this runs over whole logs in clients
    while len(level) > 1:
        paired = [
            sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(perfect: PerfectSubtree, index: int, size: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1, leaf to root order."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start = 0
    while size > 1:
        k = _largest_power_of_two_below(size)
        if index < k:
            path.append(subtree_root(perfect, start + k, size - k))
            size = k
        else:
            path.append(subtree_root(perfect, start, k))
            start, index, size = start + k, index - k, size - k
    path.reverse()
    return path


def consistency_proof(perfect: PerfectSubtree, old: int, new: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from {old} to {new}")
    if old == new:
        return []
    proof: list[bytes] = []
    start, m, n, complete = 0, old, new, True
    while m != n:
        k = _largest_power_of_two_below(n)
        if m <= k:
            proof.append(subtree_root(perfect, start + k, n - k))
            n = k
        else:
            proof.append(subtree_root(perfect, start, k))
            start, m, n, complete = start + k, m - k, n - k, False
    if not complete:
        proof.append(subtree_root(perfect, start, m))
    proof.reverse()
    return proof


def _check_hashes(items: Sequence[bytes], what: str) -> None:
    for h in items:
        if len(h) != HASH_SIZE:
            raise ProofError(f"{what} has a hash of {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root that ``proof`` yields for ``leaf`` at ``index``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size}")
    _check_hashes([leaf, *proof], "inclusion proof")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: the tree of ``new_size`` extends the tree of ``old_size``."""
    _check_hashes([old_root, new_root, *proof], "consistency proof")
    if old_size < 0 or new_size < old_size:
        raise ProofError(f"a tree of {new_size} cannot extend one of {old_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("trees of equal size must have equal roots and an empty proof")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise ProofError(f"the tree of {new_size} does not extend the tree of {old_size}")
