"""Job records in the store: saving them, recording a running job's progress, listing them, their
log lines."""
