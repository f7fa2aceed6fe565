"""The persisted and wire types, declared once: job records, backfills, the schedule, stats answers,
cities, summaries and the API's small bodies. Only msgspec and the standard library: the CLI
client decodes answers with these same types without importing the server."""
