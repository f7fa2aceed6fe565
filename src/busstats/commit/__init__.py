"""Committing a date: its summary (the commit itself) and the sweep of what it replaced."""
