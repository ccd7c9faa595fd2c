"""Builds the dashboard from settings and serves it."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from dashboard.app import build_app
from dashboard.auth import Credential, SessionSigner
from dashboard.health import KafkaLag
from dashboard.queries import Store
from sislms.local_secrets import local_secret
from sislms.sis import hold_book
from sislms.wiring import Kernel
from streams.kafka import client_config
from streams.settings import Settings

__all__ = ["build_dashboard", "dashboard_password", "serve_dashboard"]

log = logging.getLogger(__name__)


def dashboard_password(settings: Settings) -> str:
    if settings.dashboard_password is not None:
        return settings.dashboard_password.get_secret_value()
    return local_secret(settings.state_dir, "dashboard-password")


def _session_key(settings: Settings) -> bytes:
    if settings.dashboard_session_key is not None:
        return settings.dashboard_session_key.get_secret_value().encode()
    return local_secret(settings.state_dir, "dashboard-session-key").encode()


def build_dashboard(
    settings: Settings, kernel: Kernel | None = None, *, schema: str | None = None
) -> web.Application:
    """The dashboard app; its connection pool opens when the app starts and closes with it."""
    kernel = kernel or Kernel(settings)
    pool = AsyncConnectionPool(kernel.endpoints.postgres_dsn, min_size=1, max_size=8, open=False)
    store = Store(pool, schema or settings.analytics_schema, settings.analytics_timezone)
    prefixes = (settings.dashboard_group_prefix,) if settings.dashboard_group_prefix else ()
    lag = KafkaLag(client_config(settings, kernel.endpoints.kafka_bootstrap), prefixes)
    app = build_app(
        store,
        Credential(settings.dashboard_user, dashboard_password(settings)),
        SessionSigner(_session_key(settings)),
        lag=lag,
        holds=hold_book(settings).list,
    )

    async def open_pool(_: Any) -> None:
        await pool.open(wait=True, timeout=30)

    async def close_pool(_: Any) -> None:
        await pool.close()

    app.on_startup.append(open_pool)
    app.on_cleanup.append(close_pool)
    return app


def serve_dashboard(settings: Settings, port: int | None = None) -> None:
    """Serve the dashboard in the foreground (the analytics store is migrated first)."""
    from sislms.analytics import migrate_store

    migrate_store(settings)
    app = build_dashboard(settings)
    where = "SISLMS_DASHBOARD_PASSWORD" if settings.dashboard_password else (
        f"{settings.state_dir / 'secrets' / 'dashboard-password'}"
    )  # fmt: skip
    port = port or settings.dashboard_port
    log.info(
        "dashboard on http://%s:%d/ (user %s, password in %s)", settings.dashboard_host, port,
        settings.dashboard_user, where,
    )  # fmt: skip
    web.run_app(app, host=settings.dashboard_host, port=port, print=None, access_log=None)
