"""S3 (or any S3-compatible endpoint) through aiobotocore."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from busstats.core import metrics
from busstats.core.clock import now
from busstats.storage.base import (
    ObjectNotFound,
    PreconditionFailed,
    ScanTarget,
    StoreError,
    Versioned,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PART_SIZE = 16 * 1024 * 1024
"""Files above this size go up as a multipart upload of parts this large."""
CONNECTIONS = 64
"""Open S3 connections at most: room for every city's upload at the default concurrency, with
connections to spare for leases and records when uploads hang (botocore's default is 10)."""


@contextlib.asynccontextmanager
async def _translated_errors(action: str) -> AsyncGenerator[None]:
    """Turn botocore's many exception types into StoreError with a readable message."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchKey", "404", "NotFound"}:
            raise ObjectNotFound(action) from exc
        if code in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
            raise PreconditionFailed(f"S3 {action}: {code}") from exc
        metrics.record_store_error(action.split()[0])
        raise StoreError(f"S3 {action} failed: {exc}") from exc
    except BotoCoreError as exc:
        metrics.record_store_error(action.split()[0])
        raise StoreError(f"S3 {action} failed: {exc}") from exc


class S3Store:
    def __init__(
        self,
        client: S3Client,
        bucket: str,
        storage_options: dict[str, str],
        exit_stack: contextlib.AsyncExitStack,
        part_size: int = PART_SIZE,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self._part_size = part_size
        self._storage_options = storage_options
        self._exit_stack = exit_stack

    @property
    def part_size(self) -> int:
        """Bytes of one multipart part: an upload holds at most this much in memory."""
        return self._part_size

    @classmethod
    async def open(
        cls,
        bucket: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = PART_SIZE,
        attempts: int = 5,
    ) -> S3Store:
        config = AioConfig(
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=CONNECTIONS,
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        exit_stack = contextlib.AsyncExitStack()
        client: S3Client = await exit_stack.enter_async_context(
            # The stubs type only the S3 overload we installed; the others are unknown.
            get_session().create_client(  # pyright: ignore[reportUnknownMemberType]
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        )
        options = {"aws_region": region}
        if endpoint_url:
            options["aws_endpoint_url"] = endpoint_url
            if endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        if access_key_id and secret_access_key:
            options["aws_access_key_id"] = access_key_id
            options["aws_secret_access_key"] = secret_access_key
        return cls(client, bucket, options, exit_stack, part_size)

    async def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        async with _translated_errors(f"put {key}"):
            if if_absent:
                answer = await self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*"
                )
            elif if_match is not None:
                answer = await self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, IfMatch=if_match
                )
            else:
                answer = await self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return answer.get("ETag", "")

    async def put_file(self, key: str, path: Path) -> None:
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= self._part_size:
            await self.put_bytes(key, await asyncio.to_thread(path.read_bytes))
            return
        async with _translated_errors(f"multipart upload of {key}"):
            upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
            upload_id = upload["UploadId"]
            try:
                parts = await self._upload_parts(key, upload_id, path)
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            except BaseException:
                # Nothing half-written may stay behind, also when the job is cancelled.
                with contextlib.suppress(ClientError, BotoCoreError):
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                raise

    async def _upload_parts(self, key: str, upload_id: str, path: Path) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        with path.open("rb") as source:
            number = 1
            while chunk := await asyncio.to_thread(source.read, self._part_size):
                answer = await self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                number += 1
        return parts

    async def get_bytes(self, key: str) -> bytes:
        async with _translated_errors(f"get {key}"):
            answer = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with answer["Body"] as body:
                return await body.read()

    async def get_versioned(self, key: str) -> Versioned:
        async with _translated_errors(f"get {key}"):
            answer = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with answer["Body"] as body:
                return Versioned(await body.read(), answer.get("ETag", ""))

    async def list_keys(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        stop_after: str | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """One LIST per 1,000 keys, from `start_after` on, stopping past `stop_after` or once
        `limit` keys are found."""
        found: list[str] = []
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after is not None:
            arguments["StartAfter"] = start_after
        if limit is not None:
            arguments["PaginationConfig"] = {"PageSize": min(limit, 1000)}
        async with _translated_errors(f"list {prefix}"):
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(**arguments):
                names = [item["Key"] for item in page.get("Contents", []) if "Key" in item]
                found.extend(n for n in names if stop_after is None or n <= stop_after)
                if stop_after is not None and names and max(names) > stop_after:
                    break
                if limit is not None and len(found) >= limit:
                    break
        return sorted(found)[:limit]

    async def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            async with _translated_errors(f"delete {len(batch)} objects"):
                answer = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch]}
                )
            if errors := answer.get("Errors"):
                metrics.record_store_error("delete")
                raise StoreError(f"S3 delete failed for {len(errors)} objects: {errors[0]}")

    async def delete_if_match(self, key: str, etag: str) -> None:
        async with _translated_errors(f"delete {key}"):
            await self._client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)

    def scan_target(self, keys: list[str]) -> ScanTarget:
        return ScanTarget(
            [f"s3://{self.bucket}/{key}" for key in keys], dict(self._storage_options)
        )

    async def check(self) -> None:
        async with _translated_errors(f"head bucket {self.bucket}"):
            await self._client.head_bucket(Bucket=self.bucket)

    async def remove_leftovers(self, older_than: dt.timedelta = dt.timedelta(hours=6)) -> int:
        """Abort multipart uploads started longer ago than `older_than` that no process
        completed (a kill -9 mid-upload leaves them, billed but invisible); returns how many."""
        cutoff = now() - older_than
        aborted = 0
        async with _translated_errors("list multipart uploads"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload.get("Key"), upload.get("UploadId")
                    started = upload.get("Initiated")
                    if key and upload_id and started is not None and started <= cutoff:
                        await self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=key, UploadId=upload_id
                        )
                        aborted += 1
        return aborted

    async def close(self) -> None:
        await self._exit_stack.aclose()
