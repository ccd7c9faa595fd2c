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
