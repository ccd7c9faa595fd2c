"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import MissingFixtures
from streams.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def fixtures_dir(settings: Settings) -> Path:
    """The shared public payloads, read in place (their licences forbid copying)."""
    d = settings.fixtures_dir
    if not d.is_dir():
        raise MissingFixtures(
            f"{d} is missing: the shared fixtures must sit beside the checkout (or set SISLMS_FIXTURES_DIR)"
        )
    return d


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT
