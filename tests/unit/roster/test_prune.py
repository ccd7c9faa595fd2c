"""The people agent forgets the facts of classes a person left, but the newest few."""

from __future__ import annotations

from streams.roster.app import KEEP_LEFT_CLASSES, _prune_classes


def _person(enrolled: list[str], known: list[str]) -> dict:
    return {
        "en": {f"e-{c}": {"klass": c} for c in enrolled},
        "cl": {c: {"id": c} for c in known},
    }


def test_classes_with_enrollments_are_always_kept() -> None:
    known = [f"c{i}" for i in range(KEEP_LEFT_CLASSES * 2)]
    person = _person(known, known)
    _prune_classes(person)
    assert list(person["cl"]) == known


def test_only_the_newest_left_classes_are_kept() -> None:
    left = [f"old{i}" for i in range(KEEP_LEFT_CLASSES + 5)]
    person = _person(["now"], [*left[:3], "now", *left[3:]])
    _prune_classes(person)
    assert "now" in person["cl"]
    assert [c for c in person["cl"] if c != "now"] == left[5:]


def test_a_few_left_classes_stay() -> None:
    person = _person([], ["a", "b"])
    _prune_classes(person)
    assert list(person["cl"]) == ["a", "b"]
