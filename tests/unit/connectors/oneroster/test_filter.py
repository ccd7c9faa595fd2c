"""The OneRoster ``filter`` grammar: parsing, rendering, matching, errors."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.oneroster.errors import CodeMinor, InvalidFilter, OneRosterError
from connectors.oneroster.filter import MAX_DEPTH, And, Filter, Operator, Or, Predicate, parse
from streams.errors import RetriableError, SislmsError, SkippableError

USER: dict[str, Any] = {
    "sourcedId": "007",
    "status": "active",
    "dateLastModified": "2026-09-01T08:00:00.000Z",
    "username": "jsmith",
    "enabledUser": True,
    "givenName": "Jo",
    "familyName": "Smith-O'Brien",
    "middleName": None,
    "grades": ["09", "10"],
    "score": 7.5,
    "roles": [
        {"roleType": "primary", "role": "teacher", "org": {"sourcedId": "school-1", "type": "org"}},
        {"roleType": "secondary", "role": "aide", "org": {"sourcedId": "school-2", "type": "org"}},
    ],
    "primaryOrg": {"sourcedId": "school-1", "type": "org"},
}


def p(field: str, op: str, value: str) -> Predicate:
    return Predicate(field, Operator(op), value)


# --- parse and render ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "status='active'",
        "familyName='jones' AND dateLastModified>'2015-01-01'",
        "role='teacher' OR role='aide'",
        "a='1' OR b='2' AND c='3'",
        "(a='1' OR b='2') AND c='3'",
        "a='1' AND (b='2' OR c='3') AND d='4'",
        "familyName='O''Brien'",
        "middleName=''",
        "roles.org.sourcedId='school-1'",
        "path='C:\\temp\\x'",
        "givenName~'Zoë'",
    ],
)
def test_render_of_parse_is_the_canonical_text(text: str) -> None:
    assert parse(text).render() == text


@pytest.mark.parametrize(
    "tree",
    [
        p("status", "=", "active"),
        p("familyName", "=", "it's"),
        p("note", "~", "''quoted''"),
        p("x", "!=", "back\\slash"),
        p("x", ">=", ""),
        And((p("a", "=", "1"), Or((p("b", "<", "2"), p("c", "<=", "3"))))),
        Or((And((p("a", "=", "1"), p("b", ">", "2"))), p("c", "~", "x y"))),
        Or((p("a", "=", "1"), p("b", "=", "AND c='3'"))),
    ],
)
def test_parse_of_render_is_the_same_tree(tree: Filter) -> None:
    assert parse(tree.render()) == tree


def test_a_two_predicate_filter_parses_to_the_expected_tree() -> None:
    assert parse("familyName='jones' AND dateLastModified>'2015-01-01'") == And(
        (p("familyName", "=", "jones"), p("dateLastModified", ">", "2015-01-01"))
    )


@pytest.mark.parametrize(
    "text",
    [
        "familyName='jones' AND givenName='Jo'",
        "familyName = 'jones'   AND   givenName = 'Jo'",
        "  familyName='jones'\tand\ngivenName='Jo'  ",
        "familyName='jones'AND givenName='Jo'",
        "(familyName='jones') And (givenName='Jo')",
    ],
)
def test_whitespace_keyword_case_and_redundant_parentheses_do_not_matter(text: str) -> None:
    assert parse(text) == And((p("familyName", "=", "jones"), p("givenName", "=", "Jo")))


@pytest.mark.parametrize("op", [o.value for o in Operator])
def test_every_operator_parses_and_renders(op: str) -> None:
    tree = parse(f"score{op}'5'")
    assert tree == p("score", op, "5")
    assert tree.render() == f"score{op}'5'"


def test_and_binds_tighter_than_or() -> None:
    tree = parse("a='1' OR b='2' AND c='3'")
    assert tree == Or((p("a", "=", "1"), And((p("b", "=", "2"), p("c", "=", "3")))))
    # a alone is enough; b alone is not
    assert tree.matches({"a": "1"})
    assert not tree.matches({"b": "2"})
    assert tree.matches({"b": "2", "c": "3"})


def test_parentheses_override_precedence() -> None:
    tree = parse("(a='1' OR b='2') AND c='3'")
    assert not tree.matches({"a": "1"})
    assert tree.matches({"a": "1", "c": "3"})
    assert tree.matches({"b": "2", "c": "3"})


def test_doubled_quote_is_one_quote_and_backslash_is_literal() -> None:
    assert parse("familyName='Smith-O''Brien'") == p("familyName", "=", "Smith-O'Brien")
    assert parse("familyName='Smith-O''Brien'").matches(USER)
    assert parse("x='a\\b'") == p("x", "=", "a\\b")
    assert p("x", "=", "a'b").render() == "x='a''b'"


def test_filters_combine_with_operators_and_flatten() -> None:
    a, b, c = p("a", "=", "1"), p("b", "=", "2"), p("c", "=", "3")
    assert (a & b) & c == And((a, b, c))
    assert a | (b | c) == Or((a, b, c))
    assert ((a | b) & c).render() == "(a='1' OR b='2') AND c='3'"
    assert (a & b | c).render() == "a='1' AND b='2' OR c='3'"
    assert ((a | b) & c).fields() == {"a", "b", "c"}


def test_trees_are_frozen_and_hashable() -> None:
    tree = parse("a='1' AND b='2'")
    assert isinstance(tree, And)
    with pytest.raises(AttributeError):
        tree.operands = ()  # type: ignore[misc]
    assert len({tree, parse("a = '1' AND b = '2'")}) == 1


def test_built_predicates_are_validated() -> None:
    with pytest.raises(InvalidFilter, match="invalid field name"):
        Predicate("given name", Operator.EQ, "x")
    with pytest.raises(InvalidFilter, match="unknown operator '=='"):
        Predicate("a", "==", "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidFilter, match="must be a string"):
        Predicate("a", Operator.EQ, 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidFilter, match="at least two"):
        And((p("a", "=", "1"),))
    assert Predicate("a", "~", "x").op is Operator.CONTAINS  # type: ignore[arg-type]


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status='active'", True),
        ("status='Active'", False),  # equality is case-sensitive
        ("status!='active'", False),
        ("status!='tobedeleted'", True),
        ("username>'jsmit'", True),
        ("username>='jsmith'", True),
        ("username<'jsmith'", False),
        ("username<='jsmith'", True),
        ("familyName~'o''brien'", True),  # contains is case-insensitive
        ("familyName~'SMITH'", True),
        ("familyName~'jones'", False),
        ("givenName~''", True),
    ],
)
def test_each_operator_on_strings(text: str, expected: bool) -> None:
    assert parse(text).matches(USER) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dateLastModified>'2026-09-01T00:00:00Z'", True),
        ("dateLastModified>'2026-09-01T08:00:00Z'", False),
        ("dateLastModified>='2026-09-01T08:00:00Z'", True),
        ("dateLastModified='2026-09-01T08:00:00Z'", True),  # .000Z and Z are the same instant
        ("dateLastModified='2026-09-01T10:00:00+02:00'", True),
        ("dateLastModified!='2026-09-01T08:00:00.001Z'", True),
        ("dateLastModified<'2026-09-01T08:00:00.001Z'", True),
        ("dateLastModified>'2026-09-01'", True),  # a date is midnight UTC
        ("dateLastModified<'2026-09-02'", True),
        ("dateLastModified>'2026-09-02'", False),
        ("dateLastModified>'2026-08-31T23:59:59.999999Z'", True),
        ("dateLastModified>'2026-09-01T08:00:00'", False),  # no offset means UTC
        ("dateLastModified<'2026-12-01T00:00:00-05:00'", True),
    ],
)
def test_dates_compare_chronologically(text: str, expected: bool) -> None:
    assert parse(text).matches(USER) is expected


def test_date_comparison_is_not_textual() -> None:
    # As text the record "...08:00:00Z" sorts after "...08:00:00.000Z" ('Z' > '.');
    # as instants they are equal.
    record = {"dateLastModified": "2026-09-01T08:00:00Z"}
    assert not parse("dateLastModified>'2026-09-01T08:00:00.000Z'").matches(record)
    assert parse("dateLastModified='2026-09-01T08:00:00.000Z'").matches(record)
    # and a calendar-invalid date falls back to text comparison rather than failing
    assert parse("dateLastModified>'2026-13-01'").matches({"dateLastModified": "2026-14-01"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("score>'10'", False),  # numerically 7.5 < 10 (as text "7.5" > "10")
        ("score<'10'", True),
        ("score='7.50'", True),
        ("score>='7.5'", True),
        ("score!='7.5'", False),
        ("count>'9'", True),  # a numeric string orders numerically: 10 > 9
        ("count='10.0'", False),  # ...but equality of strings stays textual
        ("sourcedId='7'", False),  # so sourcedId 007 is not 7
        ("sourcedId='007'", True),
        ("sourcedId>'6'", True),
    ],
)
def test_numbers(text: str, expected: bool) -> None:
    assert parse(text).matches({**USER, "count": "10"}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("enabledUser='true'", True),
        ("enabledUser='false'", False),
        ("enabledUser!='false'", True),
        ("enabledUser='True'", False),
        ("enabledUser~'ru'", True),
    ],
)
def test_booleans_compare_as_true_and_false(text: str, expected: bool) -> None:
    assert parse(text).matches(USER) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("grades='10'", True),  # any element
        ("grades='11'", False),
        ("grades>'09'", True),
        ("grades<'09'", False),
        ("grades~'1'", True),
        ("grades!='10'", False),  # != is the negation of =: no element equals
        ("grades!='11'", True),
        ("roles.role='aide'", True),  # paths fan out over arrays
        ("roles.role='administrator'", False),
        ("roles.org.sourcedId='school-2'", True),
        ("roles.org.sourcedId!='school-2'", False),
        ("primaryOrg.sourcedId='school-1'", True),
        ("primaryOrg='school-1'", False),  # an object compares with nothing
        ("roles.role='teacher' AND roles.org.sourcedId='school-2'", True),  # per record, not per role
    ],
)
def test_arrays_and_paths(text: str, expected: bool) -> None:
    assert parse(text).matches(USER) is expected


def test_empty_array_matches_only_not_equal() -> None:
    record: dict[str, Any] = {"grades": []}
    assert not parse("grades='09'").matches(record)
    assert parse("grades!='09'").matches(record)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("middleName='x'", False),
        ("middleName=''", False),
        ("middleName!='x'", True),
        ("middleName~''", False),
        ("preferredFirstName>''", False),
        ("preferredFirstName!=''", True),
    ],
)
def test_missing_or_null_field_satisfies_only_not_equal(text: str, expected: bool) -> None:
    assert parse(text).matches(USER) is expected


def test_python_values_from_models_compare_too() -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    record = {"when": datetime(2026, 9, 1, 8, tzinfo=UTC), "day": date(2026, 9, 1), "n": Decimal("2.5")}
    assert parse("when='2026-09-01T08:00:00.000Z'").matches(record)
    assert parse("day<'2026-09-01T00:00:01Z'").matches(record)
    assert parse("n>'2.25'").matches(record)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "expected", "found"),
    [
        ("", 1, "a field name", "an empty filter"),
        ("   ", 1, "a field name", "an empty filter"),
        ("familyName='jones", 12, "a closing single quote", "end of filter"),
        ("familyName=jones'", 12, "a value in single quotes", "'jones'"),
        ("familyName=jones", 12, "a value in single quotes", "'jones'"),
        ('familyName="jones"', 12, "a value in single quotes", "a double quote"),
        ("score=5", 7, "a value in single quotes", "'5'"),
        ("familyName=='jones'", 11, "one of the operators", "unknown operator '=='"),
        ("familyName<>'jones'", 11, "one of the operators", "unknown operator '<>'"),
        ("familyName LIKE 'jones'", 12, "an operator", "'LIKE'"),
        ("familyName", 11, "an operator", "end of filter"),
        ("familyName=", 12, "a value in single quotes", "end of filter"),
        ("familyName='jones' AND", 23, "a field name after AND", "end of filter"),
        ("familyName='jones' OR ", 23, "a field name after OR", "end of filter"),
        ("AND familyName='jones'", 1, "a field name", "'AND' (a logical with no predicate before it)"),
        ("a='1' AND OR b='2'", 11, "a field name after AND", "'OR'"),
        ("a='1' b='2'", 7, "AND, OR or the end of the filter", "'b'"),
        ("a='1' XOR b='2'", 7, "AND, OR or the end of the filter", "'XOR'"),
        ("(a='1' AND b='2'", 17, "')' to close the '(' at column 1", "end of filter"),
        ("a='1' AND b='2')", 16, "AND, OR or the end of the filter", "')'"),
        ("((a='1')", 9, "')' to close the '(' at column 1", "end of filter"),
        ("()", 2, "a field name after '('", "')'"),
        ("1st='x'", 1, "a field name", "'1st'"),
        ("a..b='x'", 1, "a field name", "'a..b'"),
        ("role.='x'", 1, "a field name", "'role.'"),
    ],
)
def test_invalid_filters_say_where_and_what_was_expected(
    text: str, column: int, expected: str, found: str
) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse(text)
    error = caught.value
    assert error.column == column
    assert error.text == text
    assert error.expected is not None and error.expected.startswith(expected)
    assert error.found is not None and error.found.startswith(found)
    assert f"column {column}" in str(error)
    assert expected in str(error)
    assert error.code_minor == CodeMinor.INVALID_FILTER_FIELD == "invalid_filter_field"
    assert error.http_status == 400
    assert error.parameter == "filter"


def test_invalid_filter_belongs_to_the_project_error_tree() -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse("a=")
    assert isinstance(caught.value, OneRosterError)
    assert isinstance(caught.value, SislmsError)
    assert not isinstance(caught.value, SkippableError | RetriableError)
    body = caught.value.to_body()
    assert body["imsx_codeMajor"] == "failure"
    assert (
        body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == "invalid_filter_field"
    )
    assert "column 3" in body["imsx_description"]


def test_nesting_is_bounded() -> None:
    deep = "(" * MAX_DEPTH + "a='1'" + ")" * MAX_DEPTH
    assert parse(deep) == p("a", "=", "1")
    with pytest.raises(InvalidFilter, match="nested parentheses"):
        parse("(" + deep + ")")


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidFilter, match="must be text"):
        parse(None)  # type: ignore[arg-type]
