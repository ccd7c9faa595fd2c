"""The roster's Faust app takes its configuration from our settings, never from stray
environment variables that Faust would otherwise read (WEB_PORT, BROKER_URL, ...)."""

from __future__ import annotations


def test_environment_variables_faust_knows_do_not_override_the_worker(
    monkeypatch, tmp_path, make_roster
) -> None:
    for name, value in {
        "WEB_PORT": "1234",
        "BROKER_URL": "kafka://elsewhere:9092",
        "TABLE_STANDBY_REPLICAS": "7",
        "TOPIC_PARTITIONS": "99",
        "APP_DATADIR": str(tmp_path / "elsewhere"),
    }.items():
        monkeypatch.setenv(name, value)
    roster = make_roster(web_port=6099, standby_replicas=1)
    conf = roster.app.conf
    assert conf.web_port == 6099
    assert [str(u) for u in conf.broker] == ["kafka://127.0.0.1:19092"]
    assert conf.table_standby_replicas == 1
    assert conf.topic_partitions == roster.partitions
    assert str(conf.datadir) == str(tmp_path / "state")


def test_the_worker_logs_at_its_level_with_no_spinner_turning_debug_on(monkeypatch, make_roster) -> None:
    """At WARNING, Faust's terminal spinner would set the root logger to DEBUG (a log record for
    every debug line of Faust and aiokafka)."""
    import logging

    from sislms.roster import faust_worker

    roster = make_roster()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    worker = faust_worker(roster, "warning")
    worker._setup_logging()
    assert worker.spinner is None
    assert root.level == logging.WARNING and not root.isEnabledFor(logging.DEBUG)


def test_each_table_opens_its_rocksdb_with_the_budget_of_the_settings(make_roster) -> None:
    """Faust's defaults (three 64 MB write buffers and a 2 GB block cache per table and partition)
    let a worker grow with the district: 11.5 GB at 250,000 users."""
    from sislms.roster import rocksdb_options
    from streams.settings import Settings

    options = rocksdb_options(Settings(roster_rocksdb_write_buffer_mb=8, roster_rocksdb_block_cache_mb=24))
    roster = make_roster(store="rocksdb://", store_options=options)
    tables = [roster.routes, roster.classes, roster.people, roster.catalog]
    for table in tables:
        made = table.data.rocksdb_options  # the store Faust builds for the table
        assert made.write_buffer_size == 8 * 2**20
        assert made.max_write_buffer_number == 2
        assert made.block_cache_size == 24 * 2**20
        made.as_options()  # rocksdict takes them
    assert options == rocksdb_options(
        Settings(roster_rocksdb_write_buffer_mb=8, roster_rocksdb_block_cache_mb=24)
    )
