"""The service of one process over a store: what the API's lifespan opens and closes, and
the one place that wires the orchestration's parts together.

`Service` owns the shared resources (city slots, memory budget, HTTP connections, temporary
folder), the reference client, the executor, the lease keeper (and the recoveries it runs),
the job runner, the backfills, the schedule and the uploads. Each part is handed only what
it uses; none reaches through another for a third.

Example (not run: it needs a store)::

    service = Service(store, settings)
    await service.open()          # resources, recovery, lease keeping, the schedule
    job = await service.runner.submit(day)
    await service.close()         # running jobs and backfills end interrupted
"""

from __future__ import annotations

import datetime as dt

from busstats.core.settings import Settings
from busstats.executors.select import executor_for
from busstats.ingest.citywork import Executor
from busstats.ingest.resources import ProcessResources
from busstats.jobs.recorder import JobRecorder
from busstats.model.jobs import JobRecord, Trigger
from busstats.orchestration.backfills import Backfills
from busstats.orchestration.ingest_job import Ingest
from busstats.orchestration.leases import LeaseKeeper
from busstats.orchestration.recovery import JobRecovery
from busstats.orchestration.runner import ConfirmLease, JobRunner
from busstats.orchestration.schedule import Scheduler
from busstats.orchestration.uploads import Uploads
from busstats.reference.client import DateSpelling, ReferenceClient
from busstats.storage import Store


class _Opened:
    """What exists only while the service is open: it needs the open resources."""

    def __init__(self, client: ReferenceClient, executor: Executor, uploads: Uploads) -> None:
        self.client = client
        self.executor = executor
        self.uploads = uploads


class Service:
    """The orchestration of one process over `store`; see the module's docstring."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.resources = ProcessResources(settings)
        self.keeper = LeaseKeeper(store, settings)
        self.runner = JobRunner(store, settings, self.keeper, self._ingest)
        self.backfills = Backfills(store, settings, self.keeper, self.runner)
        self.scheduler = Scheduler(store, settings, self._submit_scheduled, self._job_exists)
        recovery = JobRecovery(store, self.keeper)
        self.keeper.add_recovery("jobs", recovery.recover, at_start=recovery.at_start)
        self.keeper.add_recovery("backfills", self.backfills.recover)
        self._date_spelling = DateSpelling(settings.reference_date_param)
        """Learned once for the process: later jobs send no wasted `400`s."""
        self._opened: _Opened | None = None

    async def open(self) -> None:
        """Open the shared resources, the reference client and the executor; remove what
        dead writers left, end the jobs and backfills dead processes left, start renewing
        leases, and start the schedule."""
        await self.resources.open()
        client = ReferenceClient.from_settings(
            self.settings, self.resources.session, self._date_spelling
        )
        executor = executor_for(self.settings, client, self.store, self.resources)
        uploads = Uploads(
            self.store, self.settings, self.resources, client, executor.conversions, self.runner
        )
        self._opened = _Opened(client, executor, uploads)
        await self.keeper.start()
        await self.scheduler.start()

    async def recover(self) -> None:
        """One round of recovery now (it also runs at `open()` and every lease length):
        end the jobs and backfills whose process died."""
        await self.keeper.recover()

    @property
    def uploads(self) -> Uploads:
        """Receives `PUT /raw` bodies and runs their jobs; once open."""
        return self._open().uploads

    @property
    def reference_client(self) -> ReferenceClient:
        """The reference server's client, sharing this process's connections; once open."""
        return self._open().client

    @property
    def executor(self) -> Executor:
        """Where this process's city work runs (`BUSSTATS_EXECUTOR`); once open."""
        return self._open().executor

    def _open(self) -> _Opened:
        assert self._opened is not None, "open() first"
        return self._opened

    def _ingest(self, recorder: JobRecorder, confirm_lease: ConfirmLease) -> Ingest:
        return Ingest(
            recorder,
            self.store,
            self.reference_client,
            self.resources,
            self.executor,
            confirm_lease,
        )

    async def _submit_scheduled(self, day: dt.date) -> JobRecord:
        return await self.runner.submit(day, trigger=Trigger.SCHEDULE)

    async def _job_exists(self, job_id: str) -> bool:
        return await self.runner.find(job_id) is not None

    async def close(self) -> None:
        """Stop the schedule and the backfills (no new jobs), stop renewing leases, stop the
        running jobs (each records itself interrupted), close the executor and the
        resources, and wait (a few seconds at most) for the backfills to record their end.
        The store is the caller's to close.

        The keeper stops first, as the job runner's own keeper did: a renewal hanging on a
        store that is down must not hold up the release of a lease as the jobs end (a
        release waits for the renewal in flight), and every lease was renewed within
        `BUSSTATS_LEASE_RENEW_SECONDS`, long before it expires."""
        await self.scheduler.close()
        self.backfills.stop_all()
        await self.keeper.close()
        await self.runner.close()
        if self._opened is not None:
            await self._opened.executor.close()
        await self.resources.close()
        await self.backfills.close()
