"""The rules for the repository key itself: when the enclave may switch to another key, and
when a policy may revoke a former one. Pure, no I/O: the times come from the enclave's log,
read by the caller.

Users' keyrings learn a new key from the keyring package, which takes time to reach them; a
database signed with a key they do not have yet fails for them, and one signed with a key
revoked before its successor took over leaves a gap. Hence the policy's key overlap.
"""

from __future__ import annotations

from collections.abc import Mapping

from reposeal.policy.document import Policy


def switch_problems(
    policy: Policy, new_fpr: str, current_fpr: str, named_since: float, now: float
) -> list[str]:
    """Why the enclave may not switch from ``current_fpr`` to ``new_fpr`` (empty: it may).
    ``named_since``: when the policies in force began naming the new key, without a break."""
    if not policy.repository_keys or not policy.may_sign(new_fpr):
        return [
            f"policy v{policy.version} does not name key {new_fpr} as a current or next "
            "repository key: have the admins sign a policy that does"
        ]
    if new_fpr.upper() == current_fpr.upper():
        return ["that key is the repository key already"]
    waited = now - named_since
    if waited < policy.key_overlap_seconds:
        return [
            f"key {new_fpr} was first named {waited / 3600:.1f} hours ago; policy "
            f"v{policy.version} wants it in users' keyrings for "
            f"{policy.key_overlap_seconds / 3600:.1f} hours before it signs"
        ]
    return []


def rotation_problems(
    new: Policy, signing_fpr: str, retired_since: Mapping[str, float | None], now: float
) -> list[str]:
    """Why ``new`` may not come into force, as far as the repository keys go (the admin
    thresholds are checked by ``verify_policy``): a former key is revoked only once its
    successor has signed for the overlap, and the key the enclave signs with stays named.
    ``retired_since``: for each key ``new`` revokes, when the log switched away from it."""
    reasons = []
    for fpr in new.repo_keys("revoked").fingerprints():
        since = retired_since.get(fpr)
        if since is not None and now - since < new.key_overlap_seconds:
            reasons.append(
                f"key {fpr} stopped signing {(now - since) / 3600:.1f} hours ago; policy "
                f"v{new.version} wants its successor signing for "
                f"{new.key_overlap_seconds / 3600:.1f} hours before revoking it"
            )
    if not reasons and new.repository_keys and not new.may_sign(signing_fpr):
        reasons.append(
            f"policy v{new.version} does not name the key the enclave signs with "
            f"({signing_fpr}): switch keys first (`enclave signer`, under a policy naming the "
            "new key as next), then revoke the old one"
        )
    return reasons
