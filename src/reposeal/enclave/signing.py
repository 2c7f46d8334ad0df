"""How the enclave signs: database signatures expire (the policy says when) and carry
notations that lead their holder to the log entry; every signature is verified against the
key's own certificate before anyone sees it."""

from __future__ import annotations

import io

from reposeal.enclave.home import EnclaveHome
from reposeal.openpgp.signer import Signer, SignOptions
from reposeal.openpgp.verify import Keyring, verify_detached
from reposeal.policy.document import Policy

NOTATION_POLICY = "policy@reposeal.dev"
NOTATION_LOG_INDEX = "log-index@reposeal.dev"
NOTATION_LOG = "log@reposeal.dev"


def notations(home: EnclaveHome, policy: Policy, index: int) -> tuple[tuple[str, str], ...]:
    """Notations that lead a holder of the signature to its log entry."""
    return (
        (NOTATION_POLICY, str(policy.version)),
        (NOTATION_LOG_INDEX, str(index)),
        (NOTATION_LOG, home.config()["origin"]),
    )


def db_options(home: EnclaveHome, policy: Policy, index: int) -> SignOptions:
    """Database signatures expire (policy) so frozen or replayed copies stop being trusted."""
    return SignOptions(
        expires_in=policy.db_signature_validity_seconds,
        notations=notations(home, policy, index),
    )


def sign_verified(signer: Signer, data: bytes, options: SignOptions) -> bytes:
    """A detached signature over ``data``, checked before anyone sees it."""
    signature = signer.sign_detached(io.BytesIO(data), options)
    verify_detached(data, signature, Keyring.from_bytes(signer.certificate()))
    return signature
