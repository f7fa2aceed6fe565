"""Errors that mean the same in every layer."""

from __future__ import annotations


class NotFound(Exception):
    """Nothing has the id asked for (no such job, backfill, ...). The message says what was
    looked for, in words a caller reads; the API answers it with `404` and that message.

    Its own type, not `KeyError`: a `KeyError` is also what any bug's dictionary lookup
    raises, and must not become a `404`.

    >>> str(NotFound("no job with id 'abc'"))
    "no job with id 'abc'"
    """
