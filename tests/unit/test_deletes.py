"""Deletes without a broker: which entities a delete names, the stream engine forgetting them,
the offline rewrite (only affected files, crash-safe under SIGKILL), the receipt, the role."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurebus.platform.deletes.keys import delete_target, entity_keys
from featurebus.platform.deletes.offline import DELETING_SUFFIX, delete_batch_view_rows, delete_source_rows
from featurebus.platform.deletes.receipt import DeleteReceipt, FileRewrite, NotDeleted, TopicTombstones
from featurebus.platform.kv import MemoryStore
from featurebus.platform.offline.store import all_parts, list_parts, open_store, write_partition
from featurebus.schemas.encoding import decode_partials, encode_entity_key, split_tile_key
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.streams.runtime.engine import MemorySink, RawRecord, StreamEngine
from tests.support.control import control_fixture
from tests.support.specs import HOUR, MINUTE, spending_workspace

BASE = 1_700_000_000_000 - (1_700_000_000_000 % HOUR)
SPEC = spending_workspace(name="a")
SOURCE = SPEC.source("transactions")


# -- keys --------------------------------------------------------------------------------------
def test_keys_are_checked_and_deduplicated() -> None:
    target = delete_target(SPEC, "user_spending")
    keys = entity_keys(target, [{"user_id": "u1"}, {"user_id": "u1"}, {"user_id": 7}])
    assert keys == {encode_entity_key(("u1",)): ("u1",), encode_entity_key(("7",)): ("7",)}
    with pytest.raises(InvalidRequestError, match=r"lacks join key\(s\) \['user_id'\]"):
        entity_keys(target, [{"user": "u1"}])
    with pytest.raises(InvalidRequestError, match="no keys given"):
        entity_keys(target, [])
    with pytest.raises(NotFoundError, match=r"no feature view or feature table named 'nope'.*user_spending"):
        delete_target(SPEC, "nope")


# -- the stream engine forgets deleted entities ------------------------------------------------
def _record(offset: int, user: str, ts_ms: int, amount: float) -> RawRecord:
    return RawRecord("transactions", 0, offset, orjson.dumps({"user_id": user, "amount": amount, "ts": ts_ms}))


def test_engine_drops_a_deleted_entity_so_its_next_event_starts_from_nothing() -> None:
    store, sink = MemoryStore(), MemorySink()
    engine = StreamEngine(SPEC, store, sink, lambda view: (f"features.{view}", 1))
    engine.process([_record(0, "u1", BASE + MINUTE, 5.0), _record(1, "u2", BASE + MINUTE, 7.0)])
    u1, u2 = encode_entity_key(("u1",)), encode_entity_key(("u2",))
    published_before = len(sink.records)

    dropped = engine.drop_entities("user_spending", {u1}, [(b"\x00deletes.position", b"1")])

    tombstones = sink.records[published_before:]
    assert dropped == len(tombstones) >= 1
    assert all(value is None and split_tile_key(key)[0] == u1 for _, _, key, value in tombstones)
    assert store.get(b"\x00deletes.position") == b"1"
    # The next event of u1 is counted alone; u2's tiles are untouched.
    engine.process([_record(2, "u1", BASE + MINUTE, 1.0), _record(3, "u2", BASE + MINUTE, 1.0)])
    latest = {key: value for _, _, key, value in sink.records if value is not None}
    u1_tiles = [decode_partials(v) for k, v in latest.items() if split_tile_key(k)[0] == u1]
    u2_tiles = [decode_partials(v) for k, v in latest.items() if split_tile_key(k)[0] == u2]
    assert u1_tiles and all(partials[0] == 1 for partials in u1_tiles)  # count of the new event only
    assert u2_tiles and all(partials[0] == 2 for partials in u2_tiles)
    assert engine.drop_entities("other_view", {u1}) == 0


# -- offline rewrite ---------------------------------------------------------------------------
def _store_with_three_files(root: Path) -> None:
    open_store(root)
    for first in (0, 10, 20):
        users = ["u1", "u2", "u3", "u2"] if first != 10 else ["u3", "u3", "u3", "u3"]
        frame = pd.DataFrame(
            {
                "user_id": users,
                "amount": [1.0, 2.0, 3.0, 4.0],
                "ts": pd.to_datetime([BASE + first * MINUTE] * 4, unit="ms", utc=True),
            }
        )
        write_partition(root, "a", SOURCE, "transactions", 0, frame, list(range(first, first + 4)))


def _users(path: Path) -> list[str]:
    return [str(u) for u in pq.read_table(path).column("user_id").to_pylist()]


def test_only_files_holding_the_keys_are_rewritten(tmp_path: Path) -> None:
    _store_with_three_files(tmp_path)
    parts = list_parts(tmp_path, "a", "transactions")
    untouched = parts[1].path
    before = untouched.stat().st_mtime_ns, untouched.read_bytes()

    rewrites, notes = delete_source_rows(tmp_path, "a", SOURCE, ("user_id",), {("u2",), ("u1",)})

    assert notes == []
    assert [(r.old_path, r.rows_before, r.rows_removed) for r in rewrites] == [
        (str(parts[0].path), 4, 3),
        (str(parts[2].path), 4, 3),
    ]
    assert (untouched.stat().st_mtime_ns, untouched.read_bytes()) == before
    assert [_users(p.path) for p in list_parts(tmp_path, "a", "transactions")] == [["u3"], ["u3"] * 4, ["u3"]]
    # Names (offset ranges) are kept: the materializer resumes from them.
    assert [p.path for p in list_parts(tmp_path, "a", "transactions")] == [p.path for p in parts]
    assert delete_source_rows(tmp_path, "a", SOURCE, ("user_id",), {("u2",)}) == ([], [])


def test_a_source_without_the_join_key_column_is_reported_not_deleted(tmp_path: Path) -> None:
    _store_with_three_files(tmp_path)
    rewrites, notes = delete_source_rows(tmp_path, "a", SOURCE, ("account_id",), {("x",)})
    assert rewrites == [] and len(notes) == 1 and "no column(s) ['account_id']" in notes[0].reason


_KILLED_DELETE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from featurebus.platform.deletes.offline import delete_source_rows
    from tests.support.specs import spending_workspace

    swaps = []

    def die_at_second(pending):
        swaps.append(pending)
        if len(swaps) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    source = spending_workspace(name="a").source("transactions")
    delete_source_rows(Path(sys.argv[1]), "a", source, ("user_id",), {("u1",), ("u2",)}, before_swap=die_at_second)
    """
)


def test_a_delete_killed_midway_leaves_old_or_new_files_and_a_rerun_completes_it(tmp_path: Path) -> None:
    _store_with_three_files(tmp_path)
    parts = list_parts(tmp_path, "a", "transactions")
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_DELETE, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    # The first affected file was swapped, the second was killed before its swap: whole, old.
    assert _users(parts[0].path) == ["u3"]
    assert _users(parts[2].path) == ["u1", "u2", "u3", "u2"]
    assert len(list(tmp_path.glob(f"sources/a/transactions/date=*/*{DELETING_SUFFIX}"))) == 1

    rewrites, _ = delete_source_rows(tmp_path, "a", SOURCE, ("user_id",), {("u1",), ("u2",)})

    assert [(r.old_path, r.rows_removed) for r in rewrites] == [(str(parts[2].path), 3)]
    assert [_users(p.path) for p in all_parts(tmp_path, "a", "transactions")] == [["u3"], ["u3"] * 4, ["u3"]]
    assert not list(tmp_path.glob(f"sources/a/transactions/date=*/*{DELETING_SUFFIX}"))


def test_batch_view_files_are_replaced_through_their_manifest(tmp_path: Path) -> None:
    import pyarrow as pa

    from featurebus.platform.batch.offline import list_view_parts, replace_range

    rows = pa.table(
        {
            "user_id": ["u1", "u2", "u1"],
            "ts": pa.array([BASE, BASE + MINUTE, BASE + 2 * MINUTE], pa.timestamp("ms", tz="UTC")),
            "total": [1.0, 2.0, 3.0],
        }
    )
    replace_range(tmp_path, "a", "daily", "ts", BASE, BASE + HOUR, rows)
    (old,) = list_view_parts(tmp_path, "a", "daily")

    (rewrite,) = delete_batch_view_rows(tmp_path, "a", "daily", "ts", ("user_id",), {("u1",)})

    (new,) = list_view_parts(tmp_path, "a", "daily")
    assert (rewrite.old_path, rewrite.new_path, rewrite.rows_before, rewrite.rows_removed) == (
        str(old.path),
        str(new.path),
        3,
        2,
    )
    assert _users(new.path) == ["u2"] and not old.path.exists()


# -- the receipt ---------------------------------------------------------------------------------
def test_the_receipt_round_trips_and_lists_every_change() -> None:
    receipt = DeleteReceipt(
        "a",
        "user_spending",
        2,
        True,
        True,
        False,
        topics=(TopicTombstones("featurebus.a.features.user_spending", 0, 4, 10, 13, "feature"),),
        files=(FileRewrite("/x/part-t-0-0-3.parquet", "/x/part-t-0-0-3.parquet", 4, 3, "source"),),
        not_deleted=(NotDeleted("transactions", "cleanup.policy=delete"),),
        request_id="r1",
    )
    assert DeleteReceipt.from_json(orjson.loads(orjson.dumps(receipt.to_json()))) == receipt
    assert (receipt.tombstones, receipt.rows_removed) == (4, 3)
    table = receipt.to_pandas()
    assert table["action"].tolist() == ["tombstones", "rewrite", "not_deleted"]
    assert "featurebus.a.features.user_spending[0]  4 records at offsets 10..13" in str(receipt)
    assert "NOT deleted transactions: cleanup.policy=delete" in str(receipt)


# -- the role ------------------------------------------------------------------------------------
def test_deleting_keys_needs_the_editor_role_and_every_attempt_is_audited() -> None:
    fixture = control_fixture()
    body = {"view": "user_spending", "keys": [{"user_id": "u1"}]}
    for principal in ("p-viewer", "p-consumer", "p-operator", "p-none"):
        response = fixture.client.post("/v1/workspaces/a/deletes", json=body, headers=fixture.auth(principal))
        assert response.status_code == 403, (principal, response.text)
        assert "editor" in response.json()["message"]
    # An editor passes the guard; this control plane has no bus to delete on, and says so.
    response = fixture.client.post("/v1/workspaces/a/deletes", json=body, headers=fixture.auth("p-editor"))
    assert response.status_code == 400 and "without a Kafka cluster" in response.json()["message"]
    outcomes = [
        (r.principal, r.outcome.value) for r in fixture.plane.guard.audit.records() if r.action == "keys.delete"
    ]
    assert ("p-consumer", "denied") in outcomes and ("p-editor", "failed") in outcomes
    assert fixture.client.post("/v1/workspaces/a/deletes", json=body).status_code == 401


def test_a_feature_table_is_deleted_from_like_a_view() -> None:
    from tests.support.table_repo import table_workspace

    spec = table_workspace("t")
    target = delete_target(spec, "user_scores")
    assert not target.is_batch and target.join_keys == ("user_id",)
    assert entity_keys(target, [{"user_id": "u1"}]) == {encode_entity_key(("u1",)): ("u1",)}
