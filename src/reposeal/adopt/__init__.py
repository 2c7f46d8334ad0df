"""Adopting an existing repository: its packages become the enclave's starting point."""
