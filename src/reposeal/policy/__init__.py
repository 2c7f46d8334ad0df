"""The signed policy document and the pure decision function."""
