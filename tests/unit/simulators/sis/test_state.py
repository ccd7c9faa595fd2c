"""The SIS simulator's state across a restart: the store saved and loaded whole, a simulator
started on its state file serving it, and a restarted change generator making new ids."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest

from simulators.district import District, DistrictSpec, generate
from simulators.serving import StateFileError, write_state
from simulators.sis.changes import ChangeGenerator
from simulators.sis.server import SimulatorConfig, SisSimulator
from simulators.sis.store import SisStore

SPEC = DistrictSpec(users=300, seed=11)


@pytest.fixture
def district() -> District:
    return generate(SPEC)


def _config(path: Path, save_every_s: float = 30.0) -> SimulatorConfig:
    return SimulatorConfig(
        port=0, client_id="c", client_secret="s", district=SPEC, state_file=path, save_every_s=save_every_s
    )


def _ids(store: SisStore) -> set[tuple[str, str]]:
    return {(name, sid) for name, table in store.collections.items() for sid in table}


def test_a_store_round_trips_with_its_changes_index_clock_and_meta(
    tmp_path: Path, district: District
) -> None:
    store = SisStore(district.collections)
    store.meta["district"] = {"spec": district.spec, "context": district.context}
    generator = ChangeGenerator(store, district, seed=3)
    for _ in range(150):
        generator.step()
    store.delete("users", next(iter(store.collections["users"])), kind="test", hard=True)
    path = tmp_path / "sis.state"
    assert store.save(path) == store.last_seq > 150

    loaded = SisStore.load(path)
    assert loaded.collections == store.collections
    assert loaded.changes() == store.changes() and loaded.last_seq == store.last_seq
    assert loaded._index == store._index
    assert loaded.meta == store.meta
    # The clock goes on after the last stamp, even when the wall clock is behind it.
    last_stamp = max(c.at for c in store.changes())
    assert loaded.now() > last_stamp
    behind = SisStore.load(path, clock=type(store._clock)(now=lambda: 0.0))
    assert behind.now() > last_stamp
    # Delta queries still use the index; writes go on from the restored change log.
    change = loaded.update("users", next(iter(loaded.collections["users"])), {"email": "x@y"}, kind="t")
    assert change.seq == store.last_seq + 1


def test_a_state_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.state"
    write_state(path, "sislms.canvas-store", {})
    with pytest.raises(StateFileError):
        SisStore.load(path)


def test_stop_saves_and_a_new_simulator_serves_the_restored_district(
    tmp_path: Path, district: District
) -> None:
    path = tmp_path / "sis.state"
    first = SisSimulator(_config(path), district).start()
    assert not first.restored
    for _ in range(120):
        first.generator.step()
    first.stop()
    assert path.exists()
    saved_ids = _ids(first.store)
    saved_users = [u["identifier"] for u in first.store.collections["users"].values()]

    second = SisSimulator(_config(path)).start()  # no district given: read from the file
    try:
        assert second.restored
        assert second.store.collections == first.store.collections
        assert second.store.changes() == first.store.changes()
        assert second.district.counts() == first.district.counts()
        with httpx.Client(base_url=second.url) as client:
            health = client.get("/_sim/health").json()
            assert health["lastSeq"] == first.store.last_seq
            assert health["counts"]["users"] == len(first.store.collections["users"])
            basic = base64.b64encode(b"c:s").decode()
            token = client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            ).json()["access_token"]
            sid = next(reversed(first.store.collections["users"]))  # made by the first run
            got = client.get(
                f"/ims/oneroster/rostering/v1p2/users/{sid}", headers={"Authorization": f"Bearer {token}"}
            )
            assert got.status_code == 200 and got.json()["user"]["sourcedId"] == sid

        # The restarted generator (same configured seed) makes ids and identifiers no one holds.
        before = len(second.store.changes())
        for kind in ("new_student", "new_hire", "enrollment", "grade_entry") * 5:
            second.generator.step(kind)
        made = second.store.changes(before)
        created = {(c.collection, c.sourcedId) for c in made if c.op == "create"}
        assert created and not created & saved_ids
        assert all(c.op != "update" for c in made)  # a reused sourcedId would show as an update
        new_users = [second.store.get("users", c.sourcedId) for c in made if c.collection == "users"]
        assert new_users and not {u["identifier"] for u in new_users if u} & set(saved_users)
    finally:
        second.stop()


def test_a_changed_store_is_saved_in_the_background(tmp_path: Path, district: District) -> None:
    path = tmp_path / "sis.state"
    sim = SisSimulator(_config(path, save_every_s=0.05), district).start()
    try:
        assert sim.saver is not None
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sim.generator.step("new_hire")
        seq = sim.store.last_seq
        while SisStore.load(path).last_seq != seq:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        sim.stop()


def test_without_a_state_file_nothing_is_saved(tmp_path: Path, district: District) -> None:
    config = SimulatorConfig(port=0, district=SPEC)
    sim = SisSimulator(config, district).start()
    sim.stop()
    assert sim.saver is None and not sim.save()
    assert list(tmp_path.iterdir()) == []
