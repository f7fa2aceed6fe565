"""Above the data flow: job lifecycle and leases, ingest and upload jobs, backfills, the
schedule."""
