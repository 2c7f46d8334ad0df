"""OpenPGP signing backends and verification."""
