"""The topology file: the shipped one validates; a broken one says file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.catalog import TOPIC_NAME, load_catalog
from streams.errors import ConfigError, TopologyFileError

GOOD_TOPIC = """\
  - name: sis.users.v1
    description: users
    owner: tests
    cleanup_policy: compact
    value_schema: sis/users.v1.avsc
"""


def _load(tmp_path: Path, settings, text: str):
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return path, lambda: load_catalog(path, settings.schemas_dir)


def test_shipped_topology_is_valid_and_follows_the_conventions(settings) -> None:
    cat = load_catalog(settings.topology_file, settings.schemas_dir)
    assert len(cat) >= 18
    for t in cat:
        assert TOPIC_NAME.match(t.name)
        conf = cat.config(t)
        assert conf["cleanup.policy"] == t.cleanup_policy
        if t.domain == "sis":
            assert t.cleanup_policy == "compact", t.name
        if t.domain == "dlq":
            assert t.value_schema == "dlq/dead_letter.v1.avsc"
        if t.cleanup_policy == "delete":
            assert "retention.ms" in conf, t.name
        assert cat.contract(t).schema["type"] == "record"
    assert cat.dead_letter_topic("decode").name == "dlq.decode.v1"
    with pytest.raises(ConfigError, match="not declared"):
        cat.topic("sis.nothing.v1")


@pytest.mark.parametrize(
    ("body", "line", "field", "reason"),
    [
        ("version: 1\ntopics:\n  - name: [unclosed\n", 4, "(syntax)", ""),
        (
            "version: 1\ntopics:\n" + GOOD_TOPIC + "    partitions: many\n",
            8,
            "topics[sis.users.v1].partitions",
            "valid integer",
        ),
        (
            "version: 1\ntopics:\n" + GOOD_TOPIC + "    colour: blue\n",
            8,
            "topics[sis.users.v1].colour",
            "Extra inputs",
        ),
        (
            "version: 1\ntopics:\n" + GOOD_TOPIC + "    partitions: -2\n",
            8,
            "topics[sis.users.v1].partitions",
            "greater than or equal to 1",
        ),
        (
            "version: 1\ntopics:\n" + GOOD_TOPIC.replace("sis.users.v1", "Users"),
            3,
            "topics[Users].name",
            "<domain>.<entity>.v<major>",
        ),
        (
            "version: 1\ntopics:\n" + GOOD_TOPIC.replace("users.v1.avsc", "nope.v1.avsc"),
            7,
            "topics[sis.users.v1].value_schema",
            "no schema file",
        ),
        ("version: 1\ntopics:\n" + GOOD_TOPIC + GOOD_TOPIC, 8, "topics[sis.users.v1].name", "declared twice"),
        (
            "version: 1\ntopics:\n" + GOOD_TOPIC + "    config:\n      cleanup.policy: delete\n",
            9,
            "topics[sis.users.v1].config",
            "cleanup_policy",
        ),
        ("version: 2\ntopics: []\n", 1, "version", "Input should be 1"),
    ],
)
def test_malformed_files_name_file_line_and_field(tmp_path, settings, body, line, field, reason) -> None:
    path, load = _load(tmp_path, settings, body)
    with pytest.raises(TopologyFileError) as err:
        load()
    assert err.value.path == str(path)
    assert err.value.line == line
    assert err.value.field == field
    assert reason in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: {field}")


def test_every_problem_is_listed_with_its_own_line(tmp_path, settings) -> None:
    _, load = _load(tmp_path, settings, "version: 1\ntopics:\n  - name: sis.users.v1\n    partitions: x\n")
    with pytest.raises(TopologyFileError) as err:
        load()
    lines = str(err.value).splitlines()
    assert any(":3: topics[sis.users.v1].owner: Field required" in ln for ln in lines)
    assert any(":4: topics[sis.users.v1].partitions:" in ln for ln in lines)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path, settings) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.yaml: cannot read"):
        load_catalog(tmp_path / "nothing.yaml", settings.schemas_dir)
