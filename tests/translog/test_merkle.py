"""RFC 6962 hashing and proofs: public test vectors, and an independent recomputation."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal.translog import merkle

VECTORS = Path(__file__).resolve().parents[1] / "data" / "merkle"


def _b64(items: list[str] | None) -> list[bytes]:
    return [base64.b64decode(x) for x in items or []]


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        case["leafIdx"],
        case["treeSize"],
        base64.b64decode(case["leafHash"]),
        _b64(case["proof"]),
        base64.b64decode(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        base64.b64decode(case["root1"]),
        base64.b64decode(case["root2"]),
        _b64(case["proof"]),
    )
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_vectors_are_all_there() -> None:
    assert len(_cases("inclusion")) + len(_cases("consistency")) == 92


def _naive_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written out independently, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _naive_root(leaves[:k]) + _naive_root(leaves[k:])).digest()


def _perfect(leaf_hashes: list[bytes]) -> merkle.PerfectSubtree:
    return lambda start, size: merkle.root_of_leaves(leaf_hashes[start : start + size])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_random_trees_give_proofs_that_verify_and_tampered_ones_fail(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [merkle.leaf_hash(x) for x in leaves]
    n = len(leaves)
    root = merkle.root_of_leaves(hashes)
    assert root == _naive_root(leaves)
    perfect = _perfect(hashes)
    assert merkle.subtree_root(perfect, 0, n) == root
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(perfect, i, n)
    merkle.verify_inclusion(i, n, hashes[i], proof, root)
    m = data.draw(st.integers(1, n))
    cproof = merkle.consistency_proof(perfect, m, n)
    old_root = merkle.root_of_leaves(hashes[:m])
    merkle.verify_consistency(m, n, old_root, root, cproof)
    # tampering with anything must fail
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(i, n, hashes[i], bad, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(i, n, merkle.leaf_hash(b"other" + leaves[i]), proof, root)
    if cproof:
        bad = list(cproof)
        bad[-1] = bytes(32)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, old_root, root, bad)
    if m < n:
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, root, root, cproof)
