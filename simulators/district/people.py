"""Invented people as OneRoster JSON: names, usernames, user records, roles, demographics.

Shared by the generator and the :class:`~simulators.district.factory.DistrictFactory`, so a
student hired or enrolled later looks like one generated at the start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from simulators.district import names
from simulators.district.records import Json, Weighted

__all__ = [
    "NAME_MESS_KINDS",
    "Name",
    "Usernames",
    "birth_date",
    "demographics_record",
    "draw_name",
    "draw_sex",
    "role",
    "user_record",
]

#: The kinds of unusual name the ``mess`` share draws (counted in ``District.summary()``).
NAME_MESS_KINDS = ("name_apostrophe", "name_hyphen", "name_accent")

_SEXES = Weighted(("female", "male", "other", "unspecified"), (48.8, 48.8, 0.6, 1.8))
# Single-race categories (and two-or-more) with their shares; Hispanic ethnicity is drawn apart.
_RACES = Weighted(
    *zip(
        ("white", 46.0),
        ("blackOrAfricanAmerican", 15.0),
        ("asian", 7.0),
        ("americanIndianOrAlaskaNative", 1.2),
        ("nativeHawaiianOrOtherPacificIslander", 0.6),
        ("demographicRaceTwoOrMoreRaces", 5.0),
        (None, 25.2),  # only an ethnicity reported (a race field set from the roster below)
        strict=True,
    )
)
_RACE_FIELDS = (
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
)
_BIRTH_COUNTRIES = Weighted(
    ("US", "MX", "IN", "CN", "VN", "PH", "SV", "GT", "UA", "CA"),
    (88.0, 4.0, 1.5, 1.2, 1.0, 1.0, 1.0, 0.8, 0.7, 0.8),
)
_STATES = ("CA", "OR", "WA", "NV", "AZ", "TX", "IL", "NY", "FL", "CO")


@dataclass(frozen=True)
class Name:
    """A person's drawn name, and which kind of unusual name it is (None for a plain one)."""

    given: str
    family: str
    middle: str | None
    preferred: str | None
    mess: str | None


def draw_sex(rng: random.Random) -> str:
    """A OneRoster ``sex`` value with roughly real proportions."""
    return _SEXES.draw(rng)


def draw_name(rng: random.Random, mess: float, sex: str, family: str | None = None) -> Name:
    """A fictional name: independent draws of given, middle and family names.

    Args:
        rng: the random source.
        mess: the share of names that get an apostrophe, a hyphen or an accent (each kind
            about ``mess``), and the share that get a preferred given name.
        sex: picks the given-name pool (``other``/``unspecified`` draw from both).
        family: a family name to use (siblings and their guardian share one).
    """
    pool = names.GIVEN_FEMALE if sex == "female" else names.GIVEN_MALE if sex == "male" else None
    if pool is None:
        pool = names.GIVEN_FEMALE if rng.random() < 0.5 else names.GIVEN_MALE
    given = rng.choice(pool)
    middle = rng.choice(pool) if rng.random() < 0.45 else None
    if family is None:
        family = rng.choice(names.FAMILY)
    kind = None
    r = rng.random()
    if r < mess:
        kind = "name_apostrophe"
        if rng.random() < 0.8:
            family = rng.choice(names.APOSTROPHE_FAMILY)
        else:
            given = rng.choice(names.APOSTROPHE_GIVEN)
    elif r < 2 * mess:
        kind = "name_hyphen"
        if rng.random() < 0.75:
            other = rng.choice(names.FAMILY)
            family = f"{family}-{other}" if other != family else f"{family}-{rng.choice(names.FAMILY[:20])}"
        else:
            given = rng.choice(names.HYPHEN_GIVEN)
    elif r < 3 * mess:
        kind = "name_accent"
        if rng.random() < 0.5:
            family = rng.choice(names.ACCENTED_FAMILY)
        else:
            given = rng.choice(names.ACCENTED_GIVEN)
    preferred = None
    if rng.random() < mess:
        preferred = names.NICKNAMES.get(given)
        if preferred is None:
            preferred = middle if middle and middle != given else rng.choice(pool)
    return Name(given, family, middle, preferred, kind)


class Usernames:
    """Hands out unique usernames: ``given.family``, then ``given.family2``, ... on collisions."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self._taken = taken if taken is not None else set()
        self._next: dict[str, int] = {}

    def take(self, *parts: str) -> str:
        base = names.handle(*parts)
        if base not in self._taken:
            self._taken.add(base)
            return base
        n = self._next.get(base, 2)
        while f"{base}{n}" in self._taken:
            n += 1
        self._next[base] = n + 1
        username = f"{base}{n}"
        self._taken.add(username)
        return username


def role(
    role_name: str, org_ref: Json, primary: bool, begin: str | None = None, end: str | None = None
) -> Json:
    """One ``users[].roles[]`` entry."""
    entry: Json = {"roleType": "primary" if primary else "secondary", "role": role_name, "org": org_ref}
    if begin is not None:
        entry["beginDate"] = begin
    if end is not None:
        entry["endDate"] = end
    return entry


def user_record(
    *,
    sourced_id: str,
    stamp: str,
    username: str,
    name: Name,
    roles: list[Json],
    primary_org: Json,
    identifier: str,
    user_ids: list[Json],
    email: str | None,
    grades: list[str] | None = None,
    agents: list[Json] | None = None,
    master_id: str | None = None,
    phone: str | None = None,
    sms: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Json:
    """A OneRoster 1.2 user; optional fields without a value are left out, arrays always present."""
    record: Json = {"sourcedId": sourced_id, "status": "active", "dateLastModified": stamp}
    if metadata:
        record["metadata"] = metadata
    if master_id is not None:
        record["userMasterIdentifier"] = master_id
    record["username"] = username
    record["userIds"] = user_ids
    record["enabledUser"] = True
    record["givenName"] = name.given
    record["familyName"] = name.family
    if name.middle is not None:
        record["middleName"] = name.middle
    if name.preferred is not None:
        record["preferredGivenName"] = name.preferred
    record["roles"] = roles
    record["userProfiles"] = []
    record["primaryOrg"] = primary_org
    record["identifier"] = identifier
    if email is not None:
        record["email"] = email
    if sms is not None:
        record["sms"] = sms
    if phone is not None:
        record["phone"] = phone
    record["agents"] = agents if agents is not None else []
    record["grades"] = grades if grades is not None else []
    return record


def birth_date(rng: random.Random, grade_index: int, school_year: int) -> str:
    """A birth date that fits the grade: 5 on 1 September for kindergarten, a few a year older."""
    cutoff = date(school_year - 1, 9, 1)
    age = 5 + grade_index + (1 if rng.random() < 0.07 else 0)
    youngest = date(cutoff.year - age, 9, 1)
    return (youngest - timedelta(days=rng.randrange(365))).isoformat()


def demographics_record(rng: random.Random, sourced_id: str, stamp: str, sex: str, born: str) -> Json:
    """A student's OneRoster demographics (race booleans always given, as most SIS exports do)."""
    record: Json = {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": stamp,
        "birthDate": born,
        "sex": sex,
    }
    race = _RACES.draw(rng)
    chosen: set[str] = set()
    if race == "demographicRaceTwoOrMoreRaces":
        chosen.update(rng.sample(_RACE_FIELDS, 2))
    elif race is None:
        chosen.add(rng.choice(("white", "white", "blackOrAfricanAmerican", "americanIndianOrAlaskaNative")))
    else:
        chosen.add(race)
    hispanic = race is None or rng.random() < 0.12
    for field in _RACE_FIELDS:
        record[field] = field in chosen
    record["demographicRaceTwoOrMoreRaces"] = len(chosen) > 1
    record["hispanicOrLatinoEthnicity"] = hispanic
    country = _BIRTH_COUNTRIES.draw(rng)
    record["countryOfBirthCode"] = country
    if country == "US":
        record["stateOfBirthAbbreviation"] = "CA" if rng.random() < 0.7 else rng.choice(_STATES)
        record["cityOfBirth"] = rng.choice(names.CITIES)
    # CEDS PublicSchoolResidenceStatus: 01652 resident of the district and attendance area.
    record["publicSchoolResidenceStatus"] = "01652" if rng.random() < 0.93 else "01653"
    return record
