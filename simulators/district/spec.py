"""What district to generate: :class:`DistrictSpec`, a small frozen value object."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DistrictSpec", "InvalidSpec"]

_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class InvalidSpec(ValueError):
    """A spec value out of range; the message names the field."""


@dataclass(frozen=True)
class DistrictSpec:
    """The size and randomness of a generated district.

    Attributes:
        users: students plus staff (guardians come on top). Every count scales linearly with it:
            schools, classes, enrollments, guardians, gradebook. Default 20,500 (about 40 schools,
            19,000 students, 1,500 staff).
        seed: the one seed every random choice derives from; the same spec gives identical output.
        mess: share of the relevant records that carry real-world mess (secondary roles, staff at
            two schools, missing emails, mid-year transfers, long titles, unusual names,
            preferred names); 0 gives none.
        guardians_per_student: guardian users per student (households share guardians).
        results_per_seat: share of (line item x enrolled student) pairs that have a result.
        school_year: the OneRoster ``schoolYear``: the calendar year in which the school year ends.
        as_of: the instant the district is generated "at"; every record's ``dateLastModified``
            falls in the 30 days before it (``YYYY-MM-DDTHH:MM:SS.mmmZ``).
    """

    users: int = 20_500
    seed: int = 2026
    mess: float = 0.02
    guardians_per_student: float = 0.5
    results_per_seat: float = 0.25
    school_year: int = 2027
    as_of: str = "2026-08-10T00:00:00.000Z"

    def __post_init__(self) -> None:
        if self.users < 100:
            raise InvalidSpec(f"users must be at least 100 (one school of each level), got {self.users}")
        if not 0.0 <= self.mess <= 0.25:
            raise InvalidSpec(f"mess must be within 0..0.25, got {self.mess}")
        if not 0.0 <= self.guardians_per_student <= 4.0:
            raise InvalidSpec(f"guardians_per_student must be within 0..4, got {self.guardians_per_student}")
        if not 0.0 <= self.results_per_seat <= 1.0:
            raise InvalidSpec(f"results_per_seat must be within 0..1, got {self.results_per_seat}")
        if not 1900 < self.school_year < 9999:
            raise InvalidSpec(f"school_year must be a four-digit year, got {self.school_year}")
        if not _INSTANT.match(self.as_of):
            raise InvalidSpec(f"as_of must look like 2026-08-10T00:00:00.000Z, got {self.as_of!r}")
