"""Secrets the local simulators share with our connectors: made once under the state dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["local_secret"]


def local_secret(state_dir: Path, name: str) -> str:
    """A random secret kept in ``<state_dir>/secrets/<name>`` (mode 0600), made on first use."""
    path = state_dir / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by the other side
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
