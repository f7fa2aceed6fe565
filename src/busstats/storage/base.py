"""The interface every store implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

T = TypeVar("T")


class StoreError(Exception):
    """The store failed or could not be reached."""


class ObjectNotFound(StoreError):
    """No object under the key asked for."""


class UnreadableObject(StoreError):
    """An object under a known key holds what does not decode as the record stored there
    (damaged, or written by something else): the store is no use for that record until an
    operator repairs or removes the object, which the message names."""


def decode_stored(data: bytes, kind: type[T], key: str) -> T:
    """`data`, the object under `key`, decoded as `kind`; UnreadableObject if it is not one.

    >>> decode_stored(b'{"x": 1}', dict[str, int], "a")
    {'x': 1}
    >>> decode_stored(b'{"x": tru', dict[str, int], "a")
    Traceback (most recent call last):
    ...
    busstats.storage.base.UnreadableObject: the object a is unreadable: Input data was truncated
    """
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UnreadableObject(f"the object {key} is unreadable: {exc}") from None


class PreconditionFailed(Exception):
    """A conditional write lost: the object already exists, or changed since it was read.

    Not a StoreError: the store answered, and another writer was first (a lost race). A
    caller decides what a lost race means for it; retrying the same write never helps."""


def store_down(exc: Exception) -> bool:
    """Whether to try again: the store failed, rather than refusing a conditional write."""
    return isinstance(exc, StoreError)


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """What Polars needs to read a list of objects: their locations and how to reach them."""

    sources: list[str]
    storage_options: dict[str, str] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Versioned:
    """An object's bytes and the tag of that version, for a later conditional write."""

    data: bytes
    etag: str


class Store(Protocol):
    """Keys are `/`-separated paths (see docs/storage.md); every write is all or nothing.

    Conditional writes are what makes commits and leases safe across processes: `if_absent`
    creates only when no object exists (S3 `If-None-Match: *`), `if_match` replaces only the
    version read earlier (S3 `If-Match`); a lost race raises PreconditionFailed.
    """

    @property
    def part_size(self) -> int:
        """Bytes of a file `put_file` holds in memory at once: what a caller reserves for an
        upload (an S3 multipart part; a copy buffer locally)."""
        ...

    async def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        """Write the object; returns the new version's tag."""
        ...

    async def put_file(self, key: str, path: Path) -> None:
        """Upload a file of any size; it becomes visible only once complete."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""
        ...

    async def get_versioned(self, key: str) -> Versioned:
        """The object's bytes and version tag; raises ObjectNotFound."""
        ...

    async def list_keys(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        stop_after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Every key under `prefix` (recursively), sorted; with `start_after` and
        `stop_after`, only keys strictly after the first and not after the second; with
        `limit`, only the first `limit` of those (a page, for a caller that may stop early)."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete the keys; keys already gone are no error."""
        ...

    async def delete_if_match(self, key: str, etag: str) -> None:
        """Delete the object only if it is still version `etag` (S3 `If-Match`);
        PreconditionFailed if it changed, ObjectNotFound if it is gone."""
        ...

    def scan_target(self, keys: list[str]) -> ScanTarget: ...

    async def check(self) -> None:
        """Raise StoreError unless the store answers."""
        ...

    async def remove_leftovers(self) -> int:
        """Remove what writers that died mid-write left (temporary files, unfinished
        uploads), never a live writer's; returns how many were removed."""
        ...

    async def close(self) -> None: ...
