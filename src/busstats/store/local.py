"""A local folder with the same key layout as the bucket: the embedded default."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from busstats import metrics
from busstats.store.base import ObjectNotFound, ScanTarget, StoreError


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

    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_atomically, key, lambda f: f.write(data))

    async def put_file(self, key: str, path: Path) -> None:
        def copy(dest: BinaryIO) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, dest, 1 << 20)

        await asyncio.to_thread(self._write_atomically, key, copy)

    async def get_bytes(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def list_keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            base = self._path(prefix) if prefix else self.root
            if not base.is_dir():
                return []
            return sorted(
                path.relative_to(self.root).as_posix()
                for path in base.rglob("*")
                if path.is_file() and not path.name.startswith(".tmp-")
            )

        return await asyncio.to_thread(walk)

    async def delete(self, keys: list[str]) -> None:
        def remove() -> None:
            for key in keys:
                self._path(key).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    def scan_target(self, keys: list[str]) -> ScanTarget:
        return ScanTarget([str(self._path(key)) for key in keys])

    async def check(self) -> None:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                metrics.record_store_error("check")
                raise StoreError(f"store folder {self.root} is not writable")

        await asyncio.to_thread(probe)

    async def close(self) -> None:
        return None
