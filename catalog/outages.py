"""A database or disk that cannot take a write now: held by another process for longer than the
wait (a backup, a long terminal transaction), or full. Such an error is an outage to wait out,
not a bug: the web answers 503 with the reason and Retry-After (shop_search/outages.py), the
search log keeps what it holds and writes it when the database is free."""

from __future__ import annotations

import errno

from django.db import DatabaseError

# How long a client is asked to wait before trying again (seconds)
RETRY_AFTER = 30

_BUSY = ("database is locked", "database table is locked", "database is busy", "lock timeout", "lock_not_available")
_FULL = ("database or disk is full", "disk is full", "no space left on device", "could not extend file", "disk quota")
# PostgreSQL's SQLSTATEs: disk_full, insufficient_resources, out_of_memory, lock_not_available
_PG_FULL = ("53100", "53000", "53200")
_PG_BUSY = ("55P03",)


def outage_reason(exc: BaseException) -> str | None:
    """What keeps the write from happening, in words a merchandiser can act on; None when the
    error is not such an outage."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the server's disk is full"
        if not isinstance(error, DatabaseError | OSError):
            continue
        text = str(error).lower()
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or ""
        if code in _PG_FULL or any(marker in text for marker in _FULL):
            return "the server's disk is full"
        if code in _PG_BUSY or any(marker in text for marker in _BUSY):
            return "the database is held by another task (a backup or a long import)"
    return None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


__all__ = ["RETRY_AFTER", "outage_reason"]
