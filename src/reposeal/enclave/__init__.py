"""Role 3, the enclave: decides from the bytes, signs, logs. Opens no port."""
