"""The store contract (`busstats.storage.base.Store`), on both backends: a folder and S3 (moto).

Everything above the store (commits, leases, the job index, the stats) relies on exactly these
behaviours, so the logic tests run on the local store alone and this suite keeps the two
backends equal. A stats query is run end to end here too: it is the one reader that reaches
the objects through `scan_target` (Polars' own S3 client), not through the store.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from busstats.ingest.convert import convert_file
from busstats.model.cities import City
from busstats.stats.query import country_stats
from busstats.storage import Store
from busstats.storage.base import ObjectNotFound, PreconditionFailed, Versioned
from tests.support.flows import commit_city

pytestmark = pytest.mark.both_stores

DAY = dt.date(2024, 5, 1)


async def test_bytes_written_are_read_back_with_their_version(store: Store) -> None:
    tag = await store.put_bytes("a/b/c.json", b"one")
    assert await store.get_bytes("a/b/c.json") == b"one"
    versioned = await store.get_versioned("a/b/c.json")
    assert (versioned.data, versioned.etag) == (b"one", tag)
    assert await store.put_bytes("a/b/c.json", b"two") != tag


async def test_a_missing_key_is_object_not_found(store: Store) -> None:
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("nothing/here")
    with pytest.raises(ObjectNotFound):
        await store.get_versioned("nothing/here")
    with pytest.raises(ObjectNotFound):
        await store.delete_if_match("nothing/here", '"0"')


async def test_if_absent_creates_once_and_the_second_writer_loses(store: Store) -> None:
    await store.put_bytes("lease", b"first", if_absent=True)
    with pytest.raises(PreconditionFailed):
        await store.put_bytes("lease", b"second", if_absent=True)
    assert await store.get_bytes("lease") == b"first"


async def test_if_match_replaces_only_the_version_read(store: Store) -> None:
    read = await store.put_bytes("record", b"v1")
    newer = await store.put_bytes("record", b"v2", if_match=read)
    with pytest.raises(PreconditionFailed):
        await store.put_bytes("record", b"stale", if_match=read)
    assert await store.get_versioned("record") == Versioned(b"v2", newer)


async def test_delete_if_match_deletes_only_the_version_read(store: Store) -> None:
    old = await store.put_bytes("lease", b"mine")
    await store.put_bytes("lease", b"theirs")
    with pytest.raises(PreconditionFailed):
        await store.delete_if_match("lease", old)
    current = await store.get_versioned("lease")
    await store.delete_if_match("lease", current.etag)
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("lease")


async def test_list_keys_is_recursive_sorted_and_bounded(store: Store) -> None:
    keys = ["p/2024-05-03/x", "p/2024-05-01/a/b", "p/2024-05-02/y", "q/other", "p/2024-05-01/z"]
    for key in keys:
        await store.put_bytes(key, b".")
    assert await store.list_keys("p/") == sorted(k for k in keys if k.startswith("p/"))
    assert await store.list_keys("p/", start_after="p/2024-05-01/z") == [
        "p/2024-05-02/y",
        "p/2024-05-03/x",
    ]
    assert await store.list_keys("p/", stop_after="p/2024-05-02/y", limit=2) == [
        "p/2024-05-01/a/b",
        "p/2024-05-01/z",
    ]
    assert await store.list_keys(
        "p/", start_after="p/2024-05-01/z", stop_after="p/2024-05-02/y"
    ) == ["p/2024-05-02/y"]
    assert await store.list_keys("none/") == []


async def test_delete_removes_keys_and_ignores_those_gone(store: Store) -> None:
    await store.put_bytes("d/1", b".")
    await store.put_bytes("d/2", b".")
    await store.delete(["d/1", "d/never"])
    assert await store.list_keys("d/") == ["d/2"]


async def test_a_file_larger_than_a_part_is_stored_whole(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * ((store.part_size * 2 + 12_345) // 256)
    path.write_bytes(data)
    await store.put_file("files/big.bin", path)
    assert await store.get_bytes("files/big.bin") == data


async def test_the_store_answers_its_check_and_has_no_leftovers_to_remove(store: Store) -> None:
    await store.check()
    assert await store.remove_leftovers() == 0


async def test_committed_parquet_is_read_by_the_stats_through_scan_target(
    store: Store, tmp_path: Path
) -> None:
    rows = [
        {"departure-time": f"{DAY}T08:00:00", "bus-type": "B", "passengers": p, "delay": d}
        | {"accident": accident}
        for p, d, accident in [(10, "PT600S", False), (20, "PT0S", True)]
    ]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(rows))
    out = tmp_path / "out.parquet"
    city = City(7, "Lima", "Peru")
    await commit_city(store, DAY, city, raw, out, convert_file(raw, out, city, DAY))
    result = await country_stats(store, DAY, DAY)
    assert [
        (s.country, s.buses_started, s.total_passengers, s.accident, s.average_delay_minutes)
        for s in result.stats
    ] == [("Peru", 2, 30, True, 5.0)]
