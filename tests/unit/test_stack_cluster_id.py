"""The local broker's KRaft cluster id: a form Kafka's storage tool always takes."""

from __future__ import annotations

import base64
import uuid

import pytest

from sislms.stack import components


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    plain = uuid.UUID(int=12345)
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(components.uuid, "uuid4", lambda: next(draws))
    got = components._cluster_id()
    assert got == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
    assert not got.startswith("-") and len(got) == 22
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")  # the case guarded
