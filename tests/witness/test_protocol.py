"""The tlog-witness decision and cosignatures (pure): every status the spec names, for the
hostile bodies a client can send; cosignatures that verify, and ones that must not."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reposeal.errors import InputError, VerificationError
from reposeal.translog.checkpoint import Checkpoint, NoteSigner
from reposeal.translog.cosignature import Cosigner, CosignerKey, add_cosignatures, cosignatures
from reposeal.translog.merkle import consistency_proof, inclusion_proof, leaf_hash, root_of_leaves
from reposeal.translog.witnesspolicy import WitnessEntry, WitnessPolicyError, k_of_n, parse
from reposeal.witness.protocol import Accept, Refusal, Request, decide, parse_request

ORIGIN = "example.org/log"
LOG = NoteSigner.generate(ORIGIN)
LOGS = {ORIGIN: [LOG.verifier]}


def leaves(n: int, fork: int | None = None) -> list[bytes]:
    return [leaf_hash(f"entry {i}{'x' if i == fork else ''}".encode()) for i in range(n)]


def note(n: int, fork: int | None = None, signer: NoteSigner = LOG, origin: str = ORIGIN) -> bytes:
    return signer.sign(Checkpoint(origin, n, root_of_leaves(leaves(n, fork))).text()).encode()


def proof(old: int, new: int, fork: int | None = None) -> tuple[bytes, ...]:
    hashes = leaves(new, fork)
    return tuple(consistency_proof(lambda s, k: root_of_leaves(hashes[s : s + k]), old, new))


def body(old: int, proof_: tuple[bytes, ...], note_: bytes) -> bytes:
    lines = [f"old {old}".encode(), *(base64.b64encode(h) for h in proof_)]
    return b"\n".join(lines) + b"\n\n" + note_


def held(n: int, fork: int | None = None) -> tuple[int, bytes]:
    return n, root_of_leaves(leaves(n, fork))


def verdict(raw: bytes, state: tuple[int, bytes] | None) -> Accept | Refusal:
    request = parse_request(raw)
    return request if isinstance(request, Refusal) else decide(request, LOGS, state)


def test_a_first_checkpoint_and_a_consistent_extension_are_accepted() -> None:
    assert isinstance(verdict(body(0, (), note(5)), None), Accept)
    assert isinstance(verdict(body(5, proof(5, 9), note(9)), held(5)), Accept)
    assert isinstance(verdict(body(9, (), note(9)), held(9)), Accept)  # the same again: fresh


@pytest.mark.parametrize(
    ("raw", "state", "status"),
    [
        (body(0, (), note(5)), held(3), 409),  # the client is behind: told the size held
        (body(3, proof(3, 5), note(5)), None, 409),
        (body(5, proof(5, 9, fork=2), note(9, fork=2)), held(5), 422),  # a fork
        (body(5, proof(5, 9)[:-1], note(9)), held(5), 422),  # a short proof
        (body(9, (), note(9, fork=1)), held(9), 422),  # same size, another root
        (body(0, proof(3, 5), note(5)), None, 422),  # a proof from size zero
        (body(0, (), note(5, signer=NoteSigner.generate(ORIGIN))), None, 403),  # another key
        (body(0, (), note(5, origin="other.org/log", signer=NoteSigner.generate("o"))), None, 404),
        (body(7, (), note(5)), held(7), 400),  # old beyond the checkpoint
        (b"old 01\n\n" + note(5), None, 400),
        (b"new 0\n\n" + note(5), None, 400),
        (b"old 0\n" + note(5), None, 400),  # no empty line
        (b"old 0\n!!!!\n\n" + note(5), None, 400),
        (
            b"old 3\n" + b"\n".join([base64.b64encode(b"h" * 32)] * 64) + b"\n\n" + note(5),
            None,
            400,
        ),
        (b"old 0\n\nnot a checkpoint\n", None, 400),
        (b"x" * (70 << 10), None, 413),
    ],
)
def test_hostile_or_inconsistent_requests_get_the_specs_status(
    raw: bytes, state: tuple[int, bytes] | None, status: int
) -> None:
    got = verdict(raw, state)
    assert isinstance(got, Refusal) and got.status == status, got
    if status == 409:
        assert got.size == (state[0] if state else 0)


def test_a_size_zero_checkpoint_must_have_the_empty_root() -> None:
    bad = LOG.sign(Checkpoint(ORIGIN, 0, b"\x01" * 32).text()).encode()
    got = verdict(body(0, (), bad), None)
    assert isinstance(got, Refusal) and got.status == 422


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_body_is_a_request_or_a_refusal_never_an_exception(raw: bytes) -> None:
    assert isinstance(parse_request(raw), Request | Refusal)
    assert isinstance(verdict(raw + b"\n\n" + note(3), held(3)), Accept | Refusal)


def test_cosignatures_verify_and_a_forged_one_is_refused() -> None:
    w1, w2, other = (
        Cosigner.generate("w1.example"),
        Cosigner.generate("w2.example"),
        Cosigner.generate("w3"),
    )
    n = note(4)
    text = Checkpoint(ORIGIN, 4, root_of_leaves(leaves(4))).text()
    signed = add_cosignatures(n, [w1.cosign(text, 1_700_000_000), other.cosign(text, 5)])
    assert cosignatures(signed, [w1.key, w2.key]) == {"w1.example": 1_700_000_000}
    assert CosignerKey.decode(w1.key.encode()) == w1.key
    assert Cosigner.decode(w1.encode()) == w1
    # a line with w2's name and key ID but another signature makes the note malformed
    forged = w2.cosign(Checkpoint(ORIGIN, 4, b"\x02" * 32).text(), 1_700_000_000)
    with pytest.raises(VerificationError, match=r"w2\.example"):
        cosignatures(add_cosignatures(n, [forged]), [w1.key, w2.key])


def test_witness_policies_in_the_c2sp_format() -> None:
    ws = [WitnessEntry(f"W{i}", Cosigner.generate(f"w{i}.example").key) for i in range(3)]
    two = k_of_n(ws, 2)
    assert not two.satisfied(["w0.example"]) and two.satisfied(["w0.example", "w2.example"])
    assert two.missing(["w0.example"]) == ["W1", "W2"]
    again = parse(two.render())
    assert again.satisfied(["w1.example", "w2.example"]) and not again.satisfied(["w1.example"])
    nested = parse(
        two.render().replace("quorum witnesses\n", "group both all witnesses W0\nquorum both\n")
    )
    assert not nested.satisfied(["w1.example", "w2.example"])
    assert nested.satisfied(["w0.example", "w2.example"])
    assert parse("quorum none\n").satisfied([])
    for bad in (
        "witness A key\nquorum A\n",
        f"witness A {ws[0].key.encode()}\nwitness B {ws[0].key.encode()}\nquorum A\n",
        f"witness A {ws[0].key.encode()}\ngroup G 2 A\nquorum G\n",
        f"witness A {ws[0].key.encode()}\ngroup G 1 B\nquorum G\n",
        f"witness A {ws[0].key.encode()}\n",
        "quorum X\n",
    ):
        with pytest.raises(WitnessPolicyError):
            parse(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_tlog_proof_parses_or_is_refused_with_a_typed_error(raw: bytes) -> None:
    from reposeal.translog.proof import ProofFileError, parse_proof

    for data in (
        raw,
        b"c2sp.org/tlog-proof@v1\n" + raw,
        b"c2sp.org/tlog-proof@v1\nindex 0\n" + raw,
    ):
        with contextlib.suppress(ProofFileError, InputError):
            parse_proof(data).checkpoint()


def test_a_tlog_proof_binds_its_entry_to_the_checkpoint() -> None:
    from reposeal.translog.proof import ProofFileError, make_proof, parse_proof

    entries = [f"entry {i}".encode() for i in range(7)]
    hashes = [leaf_hash(e) for e in entries]
    cp = Checkpoint(ORIGIN, 7, root_of_leaves(hashes))
    signed = LOG.sign(cp.text()).encode()
    path = inclusion_proof(lambda s, k: root_of_leaves(hashes[s : s + k]), 3, 7)
    good = parse_proof(make_proof(entries[3], 3, path, signed))
    assert good.checkpoint() == cp and good.extra == b"entry 3"
    for bad in (make_proof(entries[4], 3, path, signed), make_proof(entries[3], 2, path, signed)):
        with pytest.raises(ProofFileError, match="inclusion proof"):
            parse_proof(bad).checkpoint()


def test_only_fresh_cosignatures_from_the_past_count_towards_the_quorum() -> None:
    from reposeal.translog.published import VerifyError, check_witnessed

    ws = [Cosigner.generate(f"w{i}.example") for i in range(3)]
    policy = k_of_n([WitnessEntry(f"W{i}", w.key) for i, w in enumerate(ws)], 2)
    text = Checkpoint(ORIGIN, 4, root_of_leaves(leaves(4))).text()
    now = 1_800_000_000
    fresh, old, future = now - 60, now - 10 * 86400, now + 86400
    good = add_cosignatures(note(4), [ws[0].cosign(text, fresh), ws[1].cosign(text, fresh)])
    assert set(check_witnessed(good, policy, now, 86400)) == {"w0.example", "w1.example"}
    stale = add_cosignatures(note(4), [ws[0].cosign(text, old), ws[1].cosign(text, old)])
    with pytest.raises(VerifyError, match="frozen"):
        check_witnessed(stale, policy, now, 86400)
    ahead = add_cosignatures(note(4), [ws[0].cosign(text, fresh), ws[2].cosign(text, future)])
    with pytest.raises(VerifyError):
        check_witnessed(ahead, policy, now, 86400)


def test_a_damaged_witness_state_file_is_relearnt_not_a_crash(tmp_path: Path) -> None:
    from reposeal.repo.witnessing import WitnessState

    path = tmp_path / "witnesses.json"
    for junk in (b"{", b"[]", b'{"sizes": {"w": "x"}}', b'{"failures": {"w": 3}}'):
        path.write_bytes(junk)
        state = WitnessState.load(path)
        assert state.sizes == {} and state.failures == {}
