"""The reference client a process builds from its settings.

Kept apart from `busstats.reference` (the client itself) and from the job runner, so that any
place running city work (the runner today, a worker process or Dask worker later) builds the
same client from the same validated `Settings`.
"""

from __future__ import annotations

import aiohttp

from busstats.core.settings import Settings
from busstats.reference.client import DateSpelling, DownloadLimits, ReferenceClient, RetryPolicy


def reference_client(
    settings: Settings, session: aiohttp.ClientSession, spelling: DateSpelling
) -> ReferenceClient:
    """A client of `settings.reference_url` with the settings' retries and per-city limits.

    `spelling` is shared by every client of one process: the date parameter it learns once
    spares later jobs a wasted `400`.

    Example (not run: it needs a service's parts)::

        settings = Settings()
        spelling = DateSpelling(settings.reference_date_param)
        client = reference_client(settings, resources.session, spelling)
    """
    retry = RetryPolicy(
        attempts=settings.reference_attempts,
        wait_initial=settings.reference_backoff_seconds,
        wait_max=max(8.0, settings.reference_backoff_seconds),
    )
    return ReferenceClient(
        session,
        settings.reference_url,
        spelling,
        retry,
        DownloadLimits(settings.city_max_seconds, settings.city_max_bytes),
    )
