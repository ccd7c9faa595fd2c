"""The error tree. Each branch says what to do next.

::

    SislmsError
    ├── ConfigError             fix the configuration; nothing was applied
    │   └── FileError           a declarative file; names the file, the line and the field
    │       ├── TopologyFileError   deploy/topology.yaml
    │       └── RuleFileError       a role-mapping rule file
    ├── FatalError              stop this process and tell an operator
    │   ├── PlanRefused         the cluster cannot be changed that way (partition decrease)
    │   └── MissingFixtures     a test data folder is absent
    ├── RetriableError          try again later, with backoff (``retry_after`` seconds)
    │   └── ServiceUnavailable  the broker, registry or database does not answer
    └── SkippableError          this record only: send it to a dead-letter topic
        ├── DecodeError         bytes that are not a record of the topic's contract
        └── SchemaIncompatible  a schema the registry refuses for one subject
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "FatalError",
    "FileError",
    "MissingFixtures",
    "PlanRefused",
    "RetriableError",
    "RuleFileError",
    "SchemaIncompatible",
    "ServiceUnavailable",
    "SislmsError",
    "SkippableError",
    "TopologyFileError",
]


class SislmsError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SislmsError):
    """A setting or a declarative file is wrong. Nothing was applied."""


class FileError(ConfigError):
    """A declarative file does not validate; says where (the first problem) and lists every problem."""

    def __init__(
        self,
        path: str,
        line: int | None,
        field: str,
        reason: str,
        problems: list[tuple[int | None, str, str]] | None = None,
    ) -> None:
        self.path, self.line, self.field, self.reason = path, line, field, reason
        self.problems = problems or [(line, field, reason)]
        super().__init__(
            "\n".join(
                f"{path}:{ln}: {f}: {r}" if ln is not None else f"{path}: {f}: {r}"
                for ln, f, r in self.problems
            )
        )


class TopologyFileError(FileError):
    """The topology file does not validate; says where."""


class RuleFileError(FileError):
    """A role-mapping rule file does not validate; says where."""


class FatalError(SislmsError):
    """Stop and tell an operator."""


class PlanRefused(FatalError):
    """The requested change cannot be made safely (for example a partition decrease)."""


class MissingFixtures(FatalError):
    """The shared fixtures folder is missing."""


class RetriableError(SislmsError):
    """A transient failure: retry with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(RetriableError):
    """A service (broker, registry, database) did not answer."""


class SkippableError(SislmsError):
    """This record cannot be processed; dead-letter it and go on."""

    reason = "skipped"


class DecodeError(SkippableError):
    """Bytes that do not decode as the topic's contract."""

    reason = "undecodable"


class SchemaIncompatible(SkippableError):
    """The registry refused a schema version for one subject."""

    reason = "incompatible_schema"

    def __init__(self, subject: str, detail: str) -> None:
        self.subject, self.detail = subject, detail
        super().__init__(f"{subject}: incompatible with the registered versions: {detail}")
