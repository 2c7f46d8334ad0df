"""The transparency log: RFC 6962 Merkle tree, proofs, checkpoints, storage."""
