"""The one lease keeper of a process: every lease its jobs and backfills hold, renewed on one
timer, and one recovery of what dead processes left, on one timing.

A job holds `jobs/running/<id>` and, while it runs, `leases/date=<day>`; a backfill holds
`backfills/running/<id>`. The keeper renews them all every `BUSSTATS_LEASE_RENEW_SECONDS`,
each renewal given up on after a third of a lease (one slow request must not cost the other
leases their turn), and tells a lease's owner through its `on_lost` callback when another
process took it. Owners renew a lease themselves too (`confirm`) just before a step that
needs it, such as a commit; a loss found that way is raised to them instead.

Recovery: each kind of work registers how to end its records left behind (`add_recovery`);
the keeper runs every kind once at `start()` and again every lease length, and does the part
they share (`recover_expired`): find the leases under the kind's prefix that expired (their
process stopped renewing them: it died), take each over (so a holder that is still alive
can neither renew it nor write its record), end the record, give the lease back. Leases this
process holds are never touched.

Example (not run: it needs a store)::

    keeper = LeaseKeeper(store, settings)
    held = await keeper.take(job_lease_key(job_id), job_id, on_lost=lambda exc: stop())
    await keeper.confirm(held)       # LeaseLost if another process took it
    await keeper.release(held)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from busstats.core.clock import now
from busstats.core.settings import Settings
from busstats.storage import PreconditionFailed, Store, StoreError
from busstats.storage.leases import Lease, LeaseLost, Leases, process_owner

log = logging.getLogger(__name__)

OnLost = Callable[[LeaseLost], None]
Recovery = Callable[[], Awaitable[None]]
EndLeftBehind = Callable[[str], Awaitable[bool]]
"""Ends the record of one holder whose lease expired; True once the lease may be given back
(False leaves it taken, to expire again: the next round looks again)."""


def _nothing(_: LeaseLost) -> None:
    pass


@dataclass(eq=False)
class HeldLease:
    """A lease this process holds and the keeper renews until it is released or let go."""

    lease: Lease
    on_lost: OnLost = _nothing
    """Called when the keeper's renewal finds the lease taken by another process."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One renewal at a time: each replaces exactly the version the previous one wrote."""

    @property
    def key(self) -> str:
        return self.lease.key


class LeaseKeeper:
    """Holds the process's leases, renews them on one timer, runs recovery; see the module."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._leases = Leases(store, process_owner(), settings.lease_seconds)
        self._held: dict[str, HeldLease] = {}
        self._recoveries: list[tuple[str, Recovery, Recovery]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def owner(self) -> str:
        """The name of this process in the leases it holds."""
        return self._leases.owner

    def add_recovery(self, what: str, recover: Recovery, at_start: Recovery | None = None) -> None:
        """Run `recover` every lease length, and `at_start` (else `recover`) at `start()`;
        `what` names the kind of work in log lines ("jobs", "backfills")."""
        self._recoveries.append((what, recover, at_start or recover))

    async def start(self) -> None:
        """End what dead processes left, then start renewing this process's leases."""
        for what, _, at_start in self._recoveries:
            try:
                await at_start()
            except (StoreError, PreconditionFailed) as exc:
                log.error("could not look for %s an earlier process left unfinished: %s", what, exc)
        self._task = asyncio.create_task(self._keep(), name="lease keeper")

    async def recover(self) -> None:
        """One round of every kind's recovery, now; a failure is raised."""
        for _, recover, _ in self._recoveries:
            await recover()

    async def close(self) -> None:
        """Stop renewing; the leases still held expire unless released."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def take(self, key: str, holder: str, on_lost: OnLost = _nothing) -> HeldLease | None:
        """Take the lease (or take it over if it expired) and keep renewing it; None while
        someone else holds it."""
        lease = await self._leases.take(key, holder)
        if lease is None:
            return None
        held = HeldLease(lease, on_lost)
        self._held[key] = held
        return held

    async def confirm(self, held: HeldLease) -> None:
        """Renew the lease now; LeaseLost (and the keeper lets it go) if another process
        took it."""
        async with held.lock:
            try:
                held.lease = await self._leases.renew(held.lease)
            except LeaseLost:
                self.let_go(held)
                raise

    def let_go(self, held: HeldLease) -> None:
        """Stop renewing the lease without removing it: it expires, and recovery (in any
        process) then ends what it protected."""
        if self._held.get(held.key) is held:
            del self._held[held.key]

    async def release(self, held: HeldLease) -> None:
        """Stop renewing the lease and remove it, if it is still the version held."""
        self.let_go(held)
        async with held.lock:  # a renewal in flight changes the version to remove
            await self._leases.release(held.lease)

    async def holder_of(self, key: str) -> str | None:
        """The process that holds the lease under `key` (its owner name), None if none does."""
        lease = await self._leases.read(key)
        return None if lease is None else lease.body.owner

    @contextlib.asynccontextmanager
    async def briefly(self, key: str, holder: str) -> AsyncGenerator[bool]:
        """Hold a lease for the length of a short step, not renewed: True inside if it was
        taken, False if someone else holds it. It is given back at the end."""
        lease = await self._leases.take(key, holder)
        try:
            yield lease is not None
        finally:
            if lease is not None:
                await self._leases.release(lease)

    async def recover_expired(self, prefix: str, end: EndLeftBehind) -> None:
        """For every expired lease under `prefix` not held here: take it over, `end` the
        holder's record (the part of the key after `prefix`), give the lease back."""
        for key in await self._store.list_keys(prefix):
            if key in self._held:
                continue
            lease = await self._leases.read(key)
            if lease is None or lease.body.expires_at > now():
                continue
            # Taking the lease over stops its old holder, should it still be alive, from
            # renewing it and from writing its record.
            taken = await self._leases.take(key, key.removeprefix(prefix))
            if taken is None:
                continue
            try:
                ended = await end(key.removeprefix(prefix))
            except StoreError as exc:  # this one record (unreadable, say): the others go on
                log.error("could not end %s, left behind by a stopped process: %s", key, exc)
                continue  # the lease taken expires; a later round tries again
            if ended:
                await self._leases.release(taken)

    async def _keep(self) -> None:
        """Renew every lease held, every `lease_renew_seconds`; recover every lease length."""
        interval = self._settings.lease_renew_seconds
        last_recovery = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            await asyncio.gather(*(self._renew(held) for held in list(self._held.values())))
            if time.monotonic() - last_recovery >= self._settings.lease_seconds:
                last_recovery = time.monotonic()
                for what, recover, _ in self._recoveries:
                    try:
                        await recover()
                    except (StoreError, PreconditionFailed) as exc:  # a fence lost its races
                        log.error("could not look for %s left behind: %s", what, exc)
                    except Exception:  # never the end of renewals: a bug, logged whole
                        log.exception("looking for %s left behind failed", what)

    async def _renew(self, held: HeldLease) -> None:
        """Renew one lease, giving up well within the lease's length. A renewal given up on
        that lands later is recognised as ours by the next one."""
        try:
            async with asyncio.timeout(self._settings.lease_seconds / 3):
                await self.confirm(held)
        except LeaseLost as exc:
            held.on_lost(exc)
        except (StoreError, TimeoutError) as exc:
            log.warning("could not renew lease %s yet: %r", held.key, exc)
        except Exception:  # a bug: logged whole, and the other leases go on being renewed
            log.exception("renewing lease %s failed", held.key)
