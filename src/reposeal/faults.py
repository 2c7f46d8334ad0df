"""Crash on purpose, for tests: the one failure a test cannot cause from outside at an exact
moment is a kill -9 between two writes."""

from __future__ import annotations

import os
import signal


def fault_point(step: str) -> None:
    """Die here (SIGKILL, no clean-up) if REPOSEAL_FAULT names this step."""
    if os.environ.get("REPOSEAL_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
