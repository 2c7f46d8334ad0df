"""pacman formats: versions, packages, sync and files databases, diffs."""
