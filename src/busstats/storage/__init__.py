"""Object storage: one interface, a local folder and S3 behind it."""

from pathlib import Path

from busstats.core.settings import Settings
from busstats.storage.base import (
    ObjectNotFound,
    PreconditionFailed,
    ScanTarget,
    Store,
    StoreError,
    UnreadableObject,
    Versioned,
    decode_stored,
    store_down,
)
from busstats.storage.local import LocalStore
from busstats.storage.s3 import S3Store

__all__ = [
    "LocalStore",
    "ObjectNotFound",
    "PreconditionFailed",
    "S3Store",
    "ScanTarget",
    "Store",
    "StoreError",
    "UnreadableObject",
    "Versioned",
    "decode_stored",
    "open_store",
    "store_down",
]


async def open_store(settings: Settings) -> Store:
    """The store the settings name: S3 for `s3://bucket`, else a local folder."""
    bucket = settings.s3_bucket
    if bucket is None:
        return LocalStore(Path(settings.store))
    return await S3Store.open(
        bucket,
        region=settings.aws_region,
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=settings.aws_secret_access_key,
        attempts=settings.s3_attempts,
    )
