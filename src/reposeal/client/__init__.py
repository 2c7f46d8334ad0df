"""What pacman users run: scratch pacman setups and (later) verification."""
