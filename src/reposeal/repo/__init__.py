"""Role 2, the repository machine: database updates, locking, atomic publication."""
