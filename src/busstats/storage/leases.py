"""Leases in the store: who may run a job or write a date, across processes and machines.

A lease is a small object naming its holder and when it expires. It is taken with a
conditional create (S3 `If-None-Match: *`, an exclusive create locally), renewed and handed
over with `If-Match` on the version last seen, so of two processes racing for it exactly one
wins. Expiry is wall-clock time: processes sharing a store need clocks in step to well within
a lease's length (NTP does that).

Example (not run: it needs a store)::

    leases = Leases(store, owner=process_owner(), seconds=30)
    lease = await leases.take(date_lease_key(day), holder=job_id)   # None: someone holds it
    lease = await leases.renew(lease)                                # LeaseLost: it was taken
    await leases.release(lease)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

import msgspec

from busstats.core.clock import now
from busstats.storage import ObjectNotFound, PreconditionFailed, Store

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class LeaseBody(msgspec.Struct, frozen=True):
    holder: str
    """What holds the lease: a job id."""
    owner: str
    """The process that renews it: host, pid and a random part."""
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Lease:
    key: str
    body: LeaseBody
    etag: str


class LeaseLost(Exception):
    """Another process took the lease (it had expired), or it was removed."""


def process_owner() -> str:
    """A name for this process that no other process, here or elsewhere, shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    def __init__(self, store: Store, owner: str, seconds: float) -> None:
        self._store = store
        self.owner = owner
        self.length = dt.timedelta(seconds=seconds)

    def _body(self, holder: str) -> bytes:
        body = LeaseBody(holder=holder, owner=self.owner, expires_at=now() + self.length)
        return msgspec.json.encode(body)

    async def read(self, key: str) -> Lease | None:
        try:
            found = await self._store.get_versioned(key)
        except ObjectNotFound:
            return None
        try:
            body = msgspec.json.decode(found.data, type=LeaseBody)
        except msgspec.DecodeError:  # a lease nobody can read protects nothing: it has expired
            body = LeaseBody(holder="", owner="(unreadable)", expires_at=_EPOCH)
        return Lease(key, body, found.etag)

    async def take(self, key: str, holder: str) -> Lease | None:
        """Create the lease, or take it over if it expired; None while someone else holds it."""
        data = self._body(holder)
        try:
            etag = await self._store.put_bytes(key, data, if_absent=True)
        except PreconditionFailed:
            current = await self.read(key)
            if current is not None and current.body.expires_at > now():
                return None
            try:
                if current is None:
                    etag = await self._store.put_bytes(key, data, if_absent=True)
                else:
                    etag = await self._store.put_bytes(key, data, if_match=current.etag)
            except (PreconditionFailed, ObjectNotFound):
                return None  # another process was quicker
        return Lease(key, msgspec.json.decode(data, type=LeaseBody), etag)

    async def renew(self, lease: Lease) -> Lease:
        """Push the expiry forward; LeaseLost if the lease is no longer ours.

        A renewal of ours that was given up on may still have landed late, changing the
        version: a lease that still names this process and holder is ours, whatever its
        version."""
        data = self._body(lease.body.holder)
        try:
            etag = await self._store.put_bytes(lease.key, data, if_match=lease.etag)
        except (PreconditionFailed, ObjectNotFound) as exc:
            current = await self.read(lease.key)
            if current is None or not self._ours(current, lease.body.holder):
                raise LeaseLost(f"lease {lease.key} was taken or removed") from exc
            return await self.renew(current)
        return Lease(lease.key, msgspec.json.decode(data, type=LeaseBody), etag)

    def _ours(self, lease: Lease, holder: str) -> bool:
        return lease.body.owner == self.owner and lease.body.holder == holder

    async def release(self, lease: Lease) -> None:
        """Remove the lease if it is still the version we hold (a conditional delete, so a
        release that arrives late never removes a lease another process took since)."""
        with contextlib.suppress(PreconditionFailed, ObjectNotFound):
            await self._store.delete_if_match(lease.key, lease.etag)
