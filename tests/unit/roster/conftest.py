"""Fixtures of the roster unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from streams.catalog import Catalog, load_catalog
from streams.roles.engine import RuleSet
from streams.roster.app import Roster
from streams.serde import Serdes


@pytest.fixture
def catalog(settings: Any) -> Catalog:
    return load_catalog(settings.topology_file, settings.schemas_dir)


@pytest.fixture
def make_roster(settings: Any, tmp_path: Any, catalog: Catalog) -> Callable[..., Roster]:
    """A roster app on the project's topology with no broker, registry or producer behind it
    (nothing is sent or encoded); keyword arguments replace the defaults."""

    def make(**overrides: Any) -> Roster:
        args: dict[str, Any] = {
            "bootstrap": "127.0.0.1:19092",
            "catalog": catalog,
            "serdes": Serdes(cast(Any, None), catalog),
            "dead_letters": cast(Any, None),
            "rules": RuleSet.load(settings.roles_file),
            "reference": cast(Any, None),
            "data_dir": tmp_path / "state",
            "producer": cast(Any, object()),
        }
        return Roster(**{**args, **overrides})

    return make
