"""The local stack: Kafka, the schema registry and PostgreSQL as background processes.

``Stack(settings).up()`` starts what is not running (and nothing that the settings point
elsewhere), waits until each answers, and is harmless to repeat. ``status()`` reports each
component's health and endpoint, with the end of its log when it died.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sislms.stack.components import COMPONENTS, Component, ComponentStatus
from sislms.stack.jars import fetch_jars
from streams.endpoints import Endpoints, resolve_endpoints
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["ComponentStatus", "Stack"]

log = logging.getLogger(__name__)


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoints: Endpoints = resolve_endpoints(settings)
        self.components: dict[str, Component] = {
            cls.name: cls(settings, self.endpoints) for cls in COMPONENTS
        }

    def select(self, names: Iterable[str] | None) -> list[Component]:
        if not names:
            return list(self.components.values())
        chosen = []
        for n in names:
            if n not in self.components:
                raise ConfigError(f"unknown component {n!r}; choose from {', '.join(self.components)}")
            chosen.append(self.components[n])
        return chosen

    def up(self, names: Iterable[str] | None = None) -> list[ComponentStatus]:
        """Start the chosen components (all by default) and wait until each answers."""
        chosen = self.select(names)
        if any(not c.external for c in chosen if c.name != "postgres"):
            fetch_jars(self.settings)
        for c in chosen:  # start all first, then wait: the JVMs boot side by side
            c.launch()
        for c in chosen:
            c.wait_ready()
        return [c.status() for c in chosen]

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        """Stop the chosen components that this stack started; returns their names."""
        stopped = []
        for c in reversed(self.select(names)):
            if c.down():
                stopped.append(c.name)
        return stopped

    def status(self, names: Iterable[str] | None = None) -> list[ComponentStatus]:
        return [c.status() for c in self.select(names)]
