"""A C2SP tlog-witness: cosigns checkpoints of the logs it knows, never two inconsistent ones."""
