"""Fixtures of the CSV binding tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.connectors.oneroster.csv.support import BASE, MANIFEST_V1P2

MakeBundle = Callable[..., Path]


@pytest.fixture
def make_bundle(tmp_path: Path) -> MakeBundle:
    """Writes a bundle folder: BASE with ``files`` replacing (or, with value None, removing) files."""
    counter = itertools.count(1)

    def make(files: dict[str, str | bytes | None] | None = None, *, manifest: str = MANIFEST_V1P2) -> Path:
        folder = tmp_path / f"bundle{next(counter)}"
        folder.mkdir()
        content: dict[str, str | bytes | None] = {**BASE, "manifest.csv": manifest, **(files or {})}
        for name, data in content.items():
            if data is not None:
                (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
        return folder

    return make
