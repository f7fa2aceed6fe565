"""Above the data flow: the service that wires it all (`service`), the one lease keeper and
its recovery timing (`leases`), the job lifecycle (`runner`), the ending of dead processes'
jobs (`recovery`), ingest and upload jobs, backfills, the schedule."""
