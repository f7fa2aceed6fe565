from __future__ import annotations

import asyncio

from busstats.core.settings import Settings
from busstats.ingest.citywork import memory_needed
from busstats.ingest.convert import SLICE_BYTES
from busstats.ingest.resources import ByteBudget
from busstats.storage.s3 import PART_SIZE


async def test_a_reservation_waits_until_the_budget_has_room() -> None:
    budget = ByteBudget(100)
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with budget.reserve(60):
            order.append("first in")
            first_in.set()
            await release_first.wait()
        order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with budget.reserve(60):
            order.append("second in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_in.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["first in"]  # 60 + 60 > 100: the second waits
    release_first.set()
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in"]


async def test_small_reservations_share_and_a_huge_one_still_fits_alone() -> None:
    budget = ByteBudget(100)
    async with budget.reserve(30), budget.reserve(30), budget.reserve(40):
        pass
    async with asyncio.timeout(5), budget.reserve(10_000):
        pass


def test_memory_needed_follows_the_slice_not_the_file() -> None:
    assert memory_needed(250_000, PART_SIZE) == 21 * 250_000
    huge = memory_needed(150 * 2**20, PART_SIZE)
    assert huge == memory_needed(500 * 2**20, PART_SIZE) == 20 * SLICE_BYTES + PART_SIZE
    assert 2 * huge <= Settings().max_bytes_in_flight < 3 * huge  # two huge cities at once
