"""Where city work runs: threads, local worker processes, or a Dask cluster
(`BUSSTATS_EXECUTOR`)."""
