"""The interface every store implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class StoreError(Exception):
    """The store failed or could not be reached."""


class ObjectNotFound(StoreError):
    """No object under the key asked for."""


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """What Polars needs to read a list of objects: their locations and how to reach them."""

    sources: list[str]
    storage_options: dict[str, str] | None = field(default=None)


class Store(Protocol):
    """Keys are `/`-separated paths as in DESIGN.md; a write is all or nothing."""

    async def put_bytes(self, key: str, data: bytes) -> None: ...

    async def put_file(self, key: str, path: Path) -> None:
        """Upload a file of any size; it becomes visible only once complete."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""
        ...

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (recursively), sorted."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete the keys; keys already gone are no error."""
        ...

    def scan_target(self, keys: list[str]) -> ScanTarget: ...

    async def check(self) -> None:
        """Raise StoreError unless the store answers."""
        ...

    async def close(self) -> None: ...
