"""Short, printable excerpts of text that came from outside (upstream bodies, headers).

Job records are readable by any caller, and logs are read in terminals: what upstream sent
reaches either only through `excerpt`, never whole and never with control characters.
"""

from __future__ import annotations

EXCERPT_CHARS = 100


def excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` printable characters of `data`; control characters are escaped,
    whitespace runs become one space, and a cut is marked with `…`.

    >>> excerpt(b"<html>\\r\\n  <body>Bad\\x1b[31m gateway</body>")
    '<html> <body>Bad\\\\x1b[31m gateway</body>'
    >>> excerpt("x" * 300, limit=5)
    'xxxxx…'
    """
    data = data[: 8 * limit]  # enough for `limit` characters after collapsing whitespace
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    printable = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    if len(printable) <= limit:
        return printable
    return printable[:limit] + "…"
