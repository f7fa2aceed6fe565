"""A local folder with the same key layout as the bucket: the embedded default."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import CoroutineType
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

from busstats.store.base import ObjectNotFound, ScanTarget, StoreError

P = ParamSpec("P")
T = TypeVar("T")


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


def _raise(exc: OSError) -> None:
    """os.walk's error handler: a folder that vanished mid-walk is fine, any other error not."""
    if not isinstance(exc, FileNotFoundError):
        raise exc


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StoreError(f"key {key!r} leaves the store folder")
        return path

    def _write_atomically(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        """Write into a temporary file beside the target, then rename it into place."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as tmp:
                write(tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    @_os_errors_as_store_errors
    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_atomically, key, lambda f: f.write(data))

    @_os_errors_as_store_errors
    async def put_file(self, key: str, path: Path) -> None:
        def copy(dest: BinaryIO) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, dest, 1 << 20)

        await asyncio.to_thread(self._write_atomically, key, copy)

    @_os_errors_as_store_errors
    async def get_bytes(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    @_os_errors_as_store_errors
    async def list_keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            if self.root.exists() and not self.root.is_dir():  # else it would look empty
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self.root))
            base = self._path(prefix) if prefix else self.root
            if not base.is_dir():
                return []
            return sorted(
                (Path(folder) / name).relative_to(self.root).as_posix()
                for folder, _, names in os.walk(base, onerror=_raise, followlinks=True)
                for name in names
                if not name.startswith(".tmp-")
            )

        return await asyncio.to_thread(walk)

    @_os_errors_as_store_errors
    async def delete(self, keys: list[str]) -> None:
        def remove() -> None:
            for key in keys:
                self._path(key).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    def scan_target(self, keys: list[str]) -> ScanTarget:
        return ScanTarget([str(self._path(key)) for key in keys])

    @_os_errors_as_store_errors
    async def check(self) -> None:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StoreError(f"store folder {self.root} is not writable")

        await asyncio.to_thread(probe)

    async def close(self) -> None:
        return None
