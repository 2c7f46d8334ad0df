"""reposeal: sign pacman repositories so no single person or machine can ship a bad package."""

__version__ = "0.1.0"
