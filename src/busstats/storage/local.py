"""A local folder with the same key layout as the bucket: the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Generator, Iterator
from pathlib import Path
from types import CoroutineType
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

from busstats.core import metrics
from busstats.core.processes import pid_alive
from busstats.storage.base import (
    ObjectNotFound,
    PreconditionFailed,
    ScanTarget,
    StoreError,
    Versioned,
)

P = ParamSpec("P")
T = TypeVar("T")
_TEMP_PREFIX = ".tmp-"
_LOCK_NAME = ".conditional-writes.lock"


COPY_BUFFER_BYTES = 1 << 20


def _etag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _os_errors_as_store_errors(
    method: Callable[Concatenate[LocalStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[LocalStore, P], CoroutineType[Any, Any, T]]:
    """Turn any OSError of a store call into a StoreError naming the folder, the call and the
    cause: a file where a folder should be, a full disk, too many open files, no permission.

    The API answers a StoreError with 503, so a broken store is never a 500.
    """

    @functools.wraps(method)
    async def translated(store: LocalStore, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(store, *args, **kwargs)
        except OSError as exc:
            key = f" {args[0]!r}" if args and isinstance(args[0], str) else ""  # key or prefix
            raise StoreError(
                f"local store {store.root}: {method.__name__}{key} failed: {exc}"
            ) from exc

    return translated


class LocalStore:
    """Writes go to a hidden temporary file beside the target, then are renamed into place, so
    readers see a whole object or none. Conditional writes hold an exclusive `flock` on one
    lock file of the store, which serialises them across the processes of this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def part_size(self) -> int:
        """Bytes `put_file` holds at once: its copy buffer."""
        return COPY_BUFFER_BYTES

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StoreError(f"key {key!r} leaves the store folder")
        return path

    def _write_atomically(
        self, key: str, write: Callable[[BinaryIO], object], *, exclusive: bool = False
    ) -> None:
        """Write into a temporary file beside the target, then move it into place; with
        `exclusive`, fail with PreconditionFailed if the target exists."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f"{_TEMP_PREFIX}{os.getpid()}-", suffix=target.suffix
        )
        try:
            with os.fdopen(fd, "wb") as tmp:
                write(tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            if exclusive:
                try:
                    os.link(tmp_name, target)  # atomic, and fails if the target exists
                except FileExistsError:
                    raise PreconditionFailed(f"{key} exists already") from None
            else:
                os.replace(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _conditional_lock(self) -> Generator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / _LOCK_NAME).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _put_conditionally(
        self, key: str, data: bytes, if_absent: bool, if_match: str | None
    ) -> None:
        with self._conditional_lock():
            if if_match is not None:
                try:
                    current = _etag(self._path(key).read_bytes())
                except FileNotFoundError:
                    raise PreconditionFailed(f"{key} is gone") from None
                if current != if_match:
                    raise PreconditionFailed(f"{key} changed since it was read")
            self._write_atomically(key, lambda f: f.write(data), exclusive=if_absent)

    @_os_errors_as_store_errors
    async def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if if_absent or if_match is not None:
            await asyncio.to_thread(self._put_conditionally, key, data, if_absent, if_match)
        else:
            await asyncio.to_thread(self._write_atomically, key, lambda f: f.write(data))
        return _etag(data)

    @_os_errors_as_store_errors
    async def put_file(self, key: str, path: Path) -> None:
        def copy(dest: BinaryIO) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, dest, COPY_BUFFER_BYTES)

        await asyncio.to_thread(self._write_atomically, key, copy)

    @_os_errors_as_store_errors
    async def get_bytes(self, key: str) -> bytes:
        def read() -> bytes:
            # Resolving checks each folder of the path on disk: done here, in the thread, it
            # costs the event loop nothing (a year of summaries: 1,800 system calls).
            return self._path(key).read_bytes()

        try:
            return await asyncio.to_thread(read)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root()  # a missing object, unless the store itself is not a folder
            raise ObjectNotFound(key) from None

    @_os_errors_as_store_errors
    async def get_versioned(self, key: str) -> Versioned:
        data = await self.get_bytes(key)
        return Versioned(data, _etag(data))

    @_os_errors_as_store_errors
    async def list_keys(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        stop_after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        def walk() -> list[str]:
            base = self._path(prefix) if prefix else self.root
            self._check_root()
            if not base.is_dir():
                return []
            keys = _keys_under(self.root, base)
            return sorted(
                key
                for key in keys
                if (start_after is None or key > start_after)
                and (stop_after is None or key <= stop_after)
            )

        return (await asyncio.to_thread(walk))[:limit]

    @_os_errors_as_store_errors
    async def delete(self, keys: list[str]) -> None:
        def remove() -> None:
            for key in keys:
                path = self._path(key)
                path.unlink(missing_ok=True)
                self._remove_empty_folders(path.parent)

        await asyncio.to_thread(remove)

    def _check_root(self) -> None:
        """A store folder that is a file (or unreadable) is an error, never an empty store."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a folder")

    @_os_errors_as_store_errors
    async def delete_if_match(self, key: str, etag: str) -> None:
        def remove() -> None:
            with self._conditional_lock():
                path = self._path(key)
                try:
                    current = _etag(path.read_bytes())
                except FileNotFoundError:
                    raise ObjectNotFound(key) from None
                if current != etag:
                    raise PreconditionFailed(f"{key} changed since it was read")
                path.unlink()
                self._remove_empty_folders(path.parent)

        await asyncio.to_thread(remove)

    def _remove_empty_folders(self, folder: Path) -> None:
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone): stop here
            folder = folder.parent

    def scan_target(self, keys: list[str]) -> ScanTarget:
        """Paths for Polars. Checked by their text, not resolved on disk one by one: a year
        of files would cost a quarter of a second of system calls."""
        root = str(self.root)
        for key in keys:
            if key.startswith("/") or ".." in key.split("/"):
                raise StoreError(f"key {key!r} leaves the store folder")
        return ScanTarget([f"{root}/{key}" for key in keys])

    @_os_errors_as_store_errors
    async def check(self) -> None:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                metrics.record_store_error("check")
                raise StoreError(f"store folder {self.root} is not writable")

        await asyncio.to_thread(probe)

    @_os_errors_as_store_errors
    async def remove_leftovers(self) -> int:
        """Remove temporary files that processes which no longer run left behind (kill -9
        mid-write); returns how many. Files of live processes are kept."""

        def sweep() -> int:
            removed = 0
            if not self.root.is_dir():
                return 0
            for path in self.root.rglob(f"{_TEMP_PREFIX}*"):
                owner = path.name.removeprefix(_TEMP_PREFIX).split("-", 1)[0]
                if owner.isdigit() and pid_alive(int(owner)):
                    continue
                path.unlink(missing_ok=True)
                removed += 1
            return removed

        return await asyncio.to_thread(sweep)

    async def close(self) -> None:
        return None


def _keys_under(root: Path, folder: Path) -> Iterator[str]:
    """The key of every stored file below `folder` (inside `root`), hidden ones (temporary
    files, the lock) left out. An unreadable folder is an error, never an empty one; one
    removed mid-walk is fine. Keys are cut from the walked paths' text: a Path per file made
    listing a year of summaries cost 15 ms."""
    cut = len(str(root).rstrip("/")) + 1
    for parent, _, names in os.walk(folder, onerror=_raise_unless_gone, followlinks=True):
        under = parent[cut:]
        start = f"{under}/" if under else ""
        for name in names:
            if not name.startswith("."):
                yield start + name


def _raise_unless_gone(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):
        raise exc
