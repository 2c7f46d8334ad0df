"""Role 1b, the builders: reproducible builds with the real makepkg."""
