"""The `busstats` command. Client commands talk to a running service over HTTP."""
