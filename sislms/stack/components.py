"""The three services of the local stack: Kafka (KRaft), the schema registry, PostgreSQL.

Each one knows how to start itself in the background under ``<state_dir>/<name>/``, how to tell
whether it really answers (not merely whether its process exists), and how to stop.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from sislms.stack.jars import fetch_jars, find_java
from sislms.stack.process import ManagedProcess, tail
from streams.endpoints import LOCAL_DATABASE, Endpoints, mask_dsn
from streams.errors import FatalError
from streams.settings import Settings

__all__ = ["COMPONENTS", "Component", "ComponentStatus", "Kafka", "Postgres", "Registry"]

log = logging.getLogger(__name__)


@dataclass
class ComponentStatus:
    name: str
    state: str  # running | unhealthy | dead | stopped | external | unreachable
    healthy: bool
    endpoint: str
    pid: int | None = None
    detail: str = ""
    log_file: str | None = None
    log_tail: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Component(ABC):
    name: str

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.dir = settings.state_dir / self.name
        self.proc = ManagedProcess(self.dir, marker=str(self.dir))

    # --- what each service says about itself ---------------------------------------------
    @property
    @abstractmethod
    def external(self) -> bool: ...

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @abstractmethod
    def probe(self) -> str | None:
        """None when the service answers; otherwise why not."""

    @abstractmethod
    def _launch(self) -> None: ...

    @property
    def log_file(self) -> Path:
        return self.proc.log

    # --- lifecycle ---------------------------------------------------------------------
    def status(self) -> ComponentStatus:
        if self.external:
            problem = self.probe()
            return ComponentStatus(
                self.name,
                "external" if problem is None else "unreachable",
                problem is None,
                self.endpoint,
                detail=problem or "configured by settings; not managed here",
            )
        pid = self.proc.pid()
        if pid is None:
            if self.proc.was_started():
                return ComponentStatus(
                    self.name,
                    "dead",
                    False,
                    self.endpoint,
                    detail="the process is gone; the end of its log follows",
                    log_file=str(self.log_file),
                    log_tail=tail(self.log_file),
                )
            return ComponentStatus(self.name, "stopped", False, self.endpoint)
        problem = self.probe()
        if problem is None:
            return ComponentStatus(
                self.name, "running", True, self.endpoint, pid=pid, log_file=str(self.log_file)
            )
        return ComponentStatus(
            self.name,
            "unhealthy",
            False,
            self.endpoint,
            pid=pid,
            detail=problem,
            log_file=str(self.log_file),
            log_tail=tail(self.log_file),
        )

    def up(self) -> ComponentStatus:
        """Start unless already running; wait until the service really answers."""
        self.launch()
        self.wait_ready()
        return self.status()

    def launch(self) -> bool:
        """Start the process unless it runs already. True if it was started now."""
        if self.external or self.proc.pid() is not None:
            return False
        if _port_open(self.port):
            raise FatalError(
                f"{self.name}: port {self.port} is taken by another process; stop it or "
                f"set SISLMS_{self.name.upper()}_PORT"
            )
        self.proc.pid_file.unlink(missing_ok=True)
        log.info("%s: starting (logs: %s)", self.name, self.log_file)
        self._launch()
        return True

    def wait_ready(self) -> None:
        """Block until the service answers; FatalError with the log's end if it cannot."""
        if self.external:
            unreachable = self.probe()
            if unreachable:
                raise FatalError(f"{self.name} at {self.endpoint} does not answer: {unreachable}")
            return
        deadline = time.monotonic() + self.settings.startup_timeout_s
        problem: str | None = "not probed yet"
        while time.monotonic() < deadline:
            if self.proc.pid() is None:
                raise FatalError(
                    f"{self.name} exited during start-up; the end of {self.log_file}:\n{tail(self.log_file)}"
                )
            problem = self.probe()
            if problem is None:
                log.info("%s: ready at %s", self.name, self.endpoint)
                return
            time.sleep(0.5)
        raise FatalError(
            f"{self.name} did not become ready within {self.settings.startup_timeout_s:.0f}s "
            f"({problem}); the end of {self.log_file}:\n{tail(self.log_file)}"
        )

    def down(self) -> bool:
        if self.external:
            return False
        return self.proc.stop()


class Kafka(Component):
    """Apache Kafka in KRaft mode: one node that is broker and controller."""

    name = "kafka"

    @property
    def external(self) -> bool:
        return self.endpoints.kafka_external

    @property
    def endpoint(self) -> str:
        return self.endpoints.kafka_bootstrap

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "server.log"

    def probe(self) -> str | None:
        from confluent_kafka.admin import AdminClient

        from streams.kafka import admin_config

        if not self.external and not _port_open(self.port):
            return f"nothing listens on port {self.port}"
        conf = admin_config(self.settings, self.endpoint)
        conf["log_level"] = 0
        try:
            md = AdminClient(conf).list_topics(timeout=5)
        except Exception as exc:
            return f"metadata request failed: {exc}"
        if not md.brokers:
            return "no broker in the metadata"
        return None

    def _launch(self) -> None:
        jars = fetch_jars(self.settings)
        java = find_java(self.settings)
        data = self.dir / "data"
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.settings.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.settings.kafka_port},"
                    f"CONTROLLER://127.0.0.1:{self.settings.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.settings.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.cleaner.backoff.ms=5000",
                    "",
                ]
            )
        )
        log4j = self.dir / "log4j.properties"
        log4j.write_text(
            "\n".join(
                [
                    "log4j.rootLogger=INFO, file",
                    "log4j.logger.kafka.request.logger=WARN",
                    "log4j.logger.state.change.logger=WARN",
                    "log4j.appender.file=org.apache.log4j.RollingFileAppender",
                    f"log4j.appender.file.File={self.log_file}",
                    "log4j.appender.file.MaxFileSize=20MB",
                    "log4j.appender.file.MaxBackupIndex=3",
                    "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
                    "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
                    "",
                ]
            )
        )
        jvm = [
            str(java),
            f"-Xmx{self.settings.kafka_heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={logs}",
            "-cp",
            jars.kafka_classpath,
        ]
        if not (data / "meta.properties").exists():
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise FatalError(f"kafka: formatting {data} failed:\n{fmt.stdout}{fmt.stderr}")
        self.proc.start([*jvm, "kafka.Kafka", str(props)])


def _cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as Kafka makes them. Like Kafka's
    ``Uuid.randomUuid``, never one that starts with ``-``: the storage tool would read it as an
    option (one format in 64 failed so)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Registry(Component):
    """Apicurio Registry 3 with its Confluent-compatible API, storage in an H2 file."""

    name = "registry"

    @property
    def external(self) -> bool:
        return self.endpoints.registry_external

    @property
    def endpoint(self) -> str:
        return self.endpoints.schema_registry_url

    @property
    def port(self) -> int:
        return self.settings.registry_port

    def probe(self) -> str | None:
        auth = None
        if self.settings.schema_registry_basic_auth:
            user, _, pw = self.settings.schema_registry_basic_auth.get_secret_value().partition(":")
            auth = (user, pw)
        try:
            r = httpx.get(f"{self.endpoint.rstrip('/')}/subjects", timeout=5, auth=auth)
        except httpx.HTTPError as exc:
            return f"no answer: {exc.__class__.__name__}"
        if r.status_code != 200:
            return f"GET /subjects answered HTTP {r.status_code}"
        return None

    def _launch(self) -> None:
        jars = fetch_jars(self.settings)
        java = find_java(self.settings)
        db = self.dir / "db" / "registry"
        db.parent.mkdir(parents=True, exist_ok=True)
        self.proc.start(
            [
                str(java),
                f"-Xmx{self.settings.registry_heap}",
                "-XX:+UseSerialGC",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={self.settings.registry_port}",
                "-Dquarkus.log.console.color=false",
                "-Dquarkus.otel.enabled=false",
                f"-Dapicurio.datasource.url=jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
                "-Dapicurio.datasource.username=sa",
                "-Dapicurio.datasource.password=sa",
                f"-Dsislms.state={self.dir}",
                "-jar",
                str(jars.registry_jar),
            ]
        )


class Postgres(Component):
    """PostgreSQL 16 from the ``pgserver`` wheel, on TCP 127.0.0.1 only."""

    name = "postgres"

    @property
    def external(self) -> bool:
        return self.endpoints.postgres_external

    @property
    def endpoint(self) -> str:
        return mask_dsn(self.endpoints.postgres_dsn)

    @property
    def port(self) -> int:
        return self.settings.postgres_port

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "postgres.log"

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        super().__init__(settings, endpoints)
        # pg_ctl forks the postmaster, whose command line names the data directory.
        self.proc.marker = str(self.data)

    def probe(self) -> str | None:
        import psycopg

        dsn = self.endpoints.postgres_dsn
        if not self.external and not _port_open(self.port):
            return f"nothing listens on port {self.port}"
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                conn.execute("select 1")
        except psycopg.Error as exc:
            return f"cannot connect: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        return None

    @staticmethod
    def _bin() -> Path:
        with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR: not ours
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def _system_user(self) -> str | None:
        """PostgreSQL refuses to run as root: use pgserver's unprivileged user then."""
        if os.geteuid() != 0:
            return None
        import pwd

        self._bin()  # imports pgserver quietly first
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = "pgserver"
        ensure_user_exists(user)
        import stat

        ensure_prefix_permissions(self.dir)
        ensure_prefix_permissions(self._bin())
        ensure_folder_permissions(self._bin(), stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(self._bin().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        pw = pwd.getpwnam(user)
        for path in (self.dir, self.data):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, pw.pw_uid, pw.pw_gid)
        return user

    def _launch(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        binp = self._bin()
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            self._run(
                [
                    str(binp / "initdb"),
                    "-D",
                    str(self.data),
                    "--auth=trust",
                    "--encoding=utf8",
                    "-U",
                    "postgres",
                ],
                user,
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# sislms local stack\nlisten_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = ''\nmax_connections = 200\n"
                    "shared_buffers = 256MB\nfsync = on\n"
                )
        self._run(
            [
                str(binp / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.settings.postgres_port}",
                "start",
            ],
            user,
        )
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        self.proc.adopt(pid)
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.settings.postgres_port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (LOCAL_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'create database "{LOCAL_DATABASE}"')

    def _run(self, argv: list[str], user: str | None) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, user=user, check=False, cwd=self.dir)
        if proc.returncode != 0:
            raise FatalError(
                f"postgres: `{Path(argv[0]).name}` failed:\n{proc.stdout}{proc.stderr}\n{tail(self.log_file)}"
            )

    def down(self) -> bool:
        if self.external or self.proc.pid() is None:
            self.proc.pid_file.unlink(missing_ok=True)
            return False
        self.proc.pid_file.unlink(missing_ok=True)
        self._run(
            [str(self._bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            self._system_user(),
        )
        return True


COMPONENTS: tuple[type[Component], ...] = (Kafka, Registry, Postgres)
