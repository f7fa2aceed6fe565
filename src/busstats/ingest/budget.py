"""A cap on the bytes that work in progress holds in memory, shared by all cities of a job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator


class ByteBudget:
    """Cities reserve bytes before the memory-heavy steps (converting, uploading) and wait
    while the budget is spent, so memory follows the budget rather than the city count.

    A reservation above the whole budget is cut to the budget: one city always fits.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, amount: int) -> AsyncGenerator[None]:
        amount = min(amount, self.capacity)
        async with self._changed:
            await self._changed.wait_for(lambda: self._used + amount <= self.capacity)
            self._used += amount
        try:
            yield
        finally:
            async with self._changed:
                self._used -= amount
                self._changed.notify_all()
