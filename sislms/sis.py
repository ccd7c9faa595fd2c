"""Builds the SIS side from settings: the simulator, the REST source, the CSV source, holds."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.control import ControlServer
from connectors.oneroster.auth import ClientCredentials
from connectors.oneroster.models import ENTITIES, entity
from connectors.sources.base import SourceState, TopicWriter
from connectors.sources.holds import Hold, HoldBook, MassChangeGuard
from connectors.sources.oneroster_rest.client import OneRosterClient
from connectors.sources.oneroster_rest.source import RestSource, RestSourceConfig
from simulators.district import DistrictSpec
from simulators.sis.server import SimulatorConfig, SisSimulator
from sislms.local_secrets import local_secret
from sislms.wiring import Kernel
from streams.compacted import read_digests, read_live_keys
from streams.errors import ConfigError
from streams.kafka import client_config
from streams.serde import Serdes
from streams.settings import Settings

if TYPE_CHECKING:
    from connectors.sources.oneroster_csv.source import CsvSource

__all__ = [
    "BackfillReport",
    "apply_hold",
    "backfill_sis",
    "build_csv_source",
    "build_rest_source",
    "build_simulator",
    "client_secret",
    "hold_book",
    "run_backfill",
    "run_rest_source",
    "sis_url",
]

STAGE = "sis_ingest"


def client_secret(settings: Settings) -> str:
    """The SIS client secret: from the environment, or (local simulator only) made once."""
    if settings.sis_client_secret is not None:
        return settings.sis_client_secret.get_secret_value()
    if settings.sis_url is not None:
        raise ConfigError("SISLMS_SIS_URL is set but SISLMS_SIS_CLIENT_SECRET is not")
    return local_secret(settings.state_dir, "sis-client-secret")


def sis_url(settings: Settings) -> str:
    return settings.sis_url or f"http://127.0.0.1:{settings.simulator_port}"


def entities(settings: Settings) -> tuple[str, ...]:
    return checked_entities(settings.sis_entities.split(","), "SISLMS_SIS_ENTITIES")


def checked_entities(names: Iterable[str], where: str) -> tuple[str, ...]:
    """The OneRoster collection names given in ``where`` (a setting, an option), each known."""
    out = tuple(n.strip() for n in names if n.strip())
    for name in out:
        try:
            entity(name)
        except KeyError as exc:
            raise ConfigError(f"{where}: {exc.args[0]}") from None
    return out


def hold_book(settings: Settings) -> HoldBook:
    return HoldBook(settings.state_dir / "holds")


def _guard(settings: Settings) -> MassChangeGuard:
    return MassChangeGuard(settings.sis_mass_change_threshold, settings.sis_mass_change_min_records)


def _writer(kernel: Kernel, source: str) -> TopicWriter:
    serdes = Serdes(kernel.registry, kernel.catalog, validate=False)  # to_record checked every field
    return TopicWriter(kernel.producer(), serdes, kernel.catalog, source=source, stage=STAGE)


def _live_keys(kernel: Kernel) -> Callable[[str], set[str]]:
    conf = client_config(kernel.settings, kernel.endpoints.kafka_bootstrap)
    return lambda topic: read_live_keys(conf, topic)


def known_fields(kernel: Kernel) -> dict[str, frozenset[str]]:
    """Each collection's fields, from its contract (what ``filter``/``fields``/``sort`` may name)."""
    out = {}
    for ent in ENTITIES:
        schema = kernel.catalog.contract(ent.topic).schema
        out[ent.name] = frozenset(f["name"] for f in schema["fields"] if f["name"] != "meta")
    return out


def build_simulator(
    settings: Settings,
    *,
    users: int | None = None,
    seed: int | None = None,
    port: int | None = None,
    change_rate: float | None = None,
    webhook_url: str | None = None,
    token_ttl_s: float | None = None,
    state_file: Path | None = None,
) -> SisSimulator:
    kernel = Kernel(settings)
    config = SimulatorConfig(
        port=settings.simulator_port if port is None else port,
        client_id=settings.sis_client_id,
        client_secret=client_secret(settings),
        token_ttl_s=settings.simulator_token_ttl_s if token_ttl_s is None else token_ttl_s,
        district=DistrictSpec(
            users=settings.simulator_users if users is None else users,
            seed=settings.simulator_seed if seed is None else seed,
        ),
        change_rate=settings.simulator_change_rate if change_rate is None else change_rate,
        webhook_url=webhook_url,
        webhook_secret=settings.sis_webhook_secret.get_secret_value()
        if settings.sis_webhook_secret
        else None,
        known_fields=known_fields(kernel),
        state_file=state_file,
    )
    return SisSimulator(config)


def build_rest_source(
    settings: Settings,
    kernel: Kernel | None = None,
    *,
    state_dir: Path | None = None,
    only: tuple[str, ...] | None = None,
) -> RestSource:
    """The OneRoster REST source; ``state_dir`` (default the settings') holds its bookmark and the
    holds, ``only`` narrows the entities."""
    kernel = kernel or Kernel(settings)
    state_dir = state_dir or settings.state_dir
    base = sis_url(settings)
    auth = ClientCredentials(
        settings.sis_token_url or f"{base}/oauth/token",
        settings.sis_client_id,
        client_secret(settings),
        settings.sis_scopes.split(),
    )
    client = OneRosterClient(
        base, auth, timeout_s=settings.sis_http_timeout_s, max_retries=settings.sis_max_retries
    )
    config = RestSourceConfig(
        name=settings.sis_source_name,
        entities=only or entities(settings),
        page_size=settings.sis_page_size,
        poll_interval_s=settings.sis_poll_interval_s,
        clock_skew_s=settings.sis_clock_skew_s,
    )
    state = SourceState(state_dir / "sources" / f"oneroster-rest-{settings.sis_source_name}.json")
    return RestSource(
        config,
        client=client,
        writer=_writer(kernel, config.source),
        catalog=kernel.catalog,
        state=state,
        holds=HoldBook(state_dir / "holds"),
        guard=_guard(settings),
        live_keys=_live_keys(kernel),
    )


def run_rest_source(settings: Settings, stop: threading.Event) -> None:
    """Run the REST source with its trigger/health/metrics endpoint until ``stop`` is set."""
    source = build_rest_source(settings)
    secret = settings.sis_webhook_secret.get_secret_value() if settings.sis_webhook_secret else None
    control = ControlServer(
        settings.sis_trigger_host, settings.sis_trigger_port, on_trigger=source.trigger, health=source.health,
        secret=secret,
    ).start()  # fmt: skip
    try:
        source.run(stop)
    finally:
        control.stop()
        source.client.close()


def build_csv_source(
    settings: Settings,
    name: str,
    kernel: Kernel | None = None,
    *,
    state_dir: Path | None = None,
    only: tuple[str, ...] | None = None,
) -> CsvSource:
    from connectors.sources.oneroster_csv.source import CsvSource

    kernel = kernel or Kernel(settings)
    source = f"oneroster-csv:{name}"
    return CsvSource(
        name=name,
        writer=_writer(kernel, source),
        catalog=kernel.catalog,
        holds=HoldBook((state_dir or settings.state_dir) / "holds"),
        guard=_guard(settings),
        live_keys=_live_keys(kernel),
        entities=only or entities(settings),
    )


@dataclass
class BackfillReport:
    """What a backfill published (or would, in a dry run), per entity."""

    published: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run, "published": self.published, "unchanged": self.unchanged,
            "deleted": self.deleted, "deadLetters": self.dead_letters, "held": self.held,
            "seconds": round(self.seconds, 1),
        }  # fmt: skip


def backfill_sis(
    settings: Settings,
    *,
    only: tuple[str, ...] | None = None,
    csv: Path | None = None,
    csv_name: str = "csv",
    publish_all: bool = False,
    dry_run: bool = False,
    kernel: Kernel | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackfillReport:
    """``sislms backfill sis``: :func:`run_backfill` on the REST source (or the CSV bundle
    ``csv``) of these settings. A dry run works on a copy of the bookmarks and holds."""
    import shutil
    import tempfile

    kernel = kernel or Kernel(settings)
    names = checked_entities(only, "--entities") if only else entities(settings)
    conf = client_config(settings, kernel.endpoints.kafka_bootstrap)
    with tempfile.TemporaryDirectory(prefix="sislms-backfill-") as scratch:
        state_dir = settings.state_dir
        if dry_run:  # bookmarks and holds copied: the dry run's changes to them are thrown away
            state_dir = Path(scratch)
            for sub in ("sources", "holds"):
                if (settings.state_dir / sub).is_dir():
                    shutil.copytree(settings.state_dir / sub, state_dir / sub)
        source: Any
        if csv is not None:
            source = build_csv_source(settings, csv_name, kernel, state_dir=state_dir, only=names)
        else:
            source = build_rest_source(settings, kernel, state_dir=state_dir, only=names)
        return run_backfill(
            source, names, conf=conf, csv=csv, publish_all=publish_all, dry_run=dry_run, progress=progress
        )


def run_backfill(
    source: Any,
    names: tuple[str, ...],
    *,
    conf: dict[str, Any],
    csv: Path | None = None,
    publish_all: bool = False,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BackfillReport:
    """A full snapshot through ``source`` (a :class:`RestSource`, or a ``CsvSource`` loading
    ``csv``): a record equal to what its compacted topic holds for its key (meta aside) is not
    published unless ``publish_all``; deletions are decided as in any snapshot (held past the
    mass-change guard). ``dry_run``: count, publish nothing."""
    import time

    started = time.monotonic()
    writer: TopicWriter = source.writer
    writer.dry_run = dry_run
    if not publish_all:
        baseline = {}
        for name in names:
            topic = source.topic(entity(name))
            baseline[topic] = read_digests(conf, topic, writer.serdes[topic])
            if progress:
                progress(f"{name}: {len(baseline[topic])} record(s) on {topic} to compare with")
        writer.baseline = baseline
    if csv is not None:
        held = dict(source.load(csv).held)
    else:
        held = dict(source.sync_once(force_snapshot=True).held)
    counts = writer.counts
    report = BackfillReport(held=held, dry_run=dry_run, seconds=time.monotonic() - started)
    for name in names:
        report.published[name] = counts[f"{name}.upsert"]
        report.unchanged[name] = counts[f"{name}.unchanged"]
        report.deleted[name] = counts[f"{name}.delete"]
        report.dead_letters[name] = counts[f"{name}.dead_letter"]
    for key, n in counts.items():  # rows of files that are no entity (roles.csv, ...) too
        if key.endswith(".dead_letter"):
            report.dead_letters.setdefault(key.removesuffix(".dead_letter"), n)
    return report


def apply_hold(settings: Settings, hold: Hold) -> int:
    """Publish an approved hold's tombstones now and mark it applied; returns how many."""
    return hold_book(settings).apply(hold, _writer(Kernel(settings), hold.source))
