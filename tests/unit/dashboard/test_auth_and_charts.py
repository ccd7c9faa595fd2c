"""The dashboard's pure parts: session cookies, the credential, the SVG charts."""

from __future__ import annotations

import pytest

from dashboard.auth import Credential, SessionSigner
from dashboard.charts import bars, histogram, line


def test_a_session_cookie_is_valid_until_it_expires_and_cannot_be_forged() -> None:
    signer = SessionSigner(b"k" * 32, ttl_s=60)
    cookie = signer.make("admin", now=1000)
    assert signer.check(cookie, now=1059) == "admin"
    assert signer.check(cookie, now=1061) is None
    payload, mac = cookie.rsplit(".", 1)
    assert signer.check(f"{payload}.{'0' * len(mac)}", now=1000) is None
    assert SessionSigner(b"x" * 32).check(cookie, now=1000) is None  # another key
    for junk in (None, "", "nodot", "bad.base64!"):
        assert signer.check(junk, now=1000) is None
    with pytest.raises(ValueError):
        SessionSigner(b"short")


def test_the_credential_matches_only_itself() -> None:
    c = Credential("admin", "pw")
    assert c.matches("admin", "pw")
    assert not c.matches("admin", "pW") and not c.matches("Admin", "pw") and not c.matches("", "")


def test_charts_escape_their_labels_and_give_every_mark_its_value() -> None:
    svg = str(line("T<i>", [("2026-11-01", 1.5), ("<script>", 3.0)], "hours", ["/rows?a=1&b=2", None]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "T&lt;i&gt;" in svg
    assert svg.count("<circle") == 2 and "&lt;script&gt;: 3.0 hours" in svg
    assert 'href="/rows?a=1&amp;b=2"' in svg
    assert svg.count("<rect") == 0 and str(bars("b", [("x", 2.0), ("y", 0.0)], "n")).count("<rect") == 2
    h = str(histogram("h", [0.0, 1.0, 2.0, 9.9, 10.0], "min", buckets=5))
    assert 'class="chart histogram"' in h and h.count("<rect") == 5
    assert "no data" in str(line("empty", [], "x"))
