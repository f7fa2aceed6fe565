"""Imported once by the forkserver of the conversion processes (`busstats.conversions`): it
converts one small day, so the converter's first-call costs (pyarrow loads modules on first
use, e.g. pandas when it is installed: up to seconds) are paid once, before any worker is
forked, and every worker, including those of a pool started afresh after a cancel or a
death, starts warm."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from busstats.ingest.convert import convert_file
from busstats.model.cities import City

SAMPLE = (
    b'[{"departure-time": "2000-01-01T08:00:00", "bus-type": "BUS-1", "passengers": 3,'
    b' "delay": "PT60S", "accident": false}]'
)


def warm_up() -> None:
    with tempfile.TemporaryDirectory(prefix="busstats-warm-") as folder:
        raw = Path(folder) / "warm.json"
        raw.write_bytes(SAMPLE)
        convert_file(raw, Path(folder) / "warm.parquet", City(0, "warm", "-"), dt.date(2000, 1, 1))


warm_up()
