"""The serving app's commands (`commands/`), and what more than one of them needs."""

from __future__ import annotations

from django.core.management.base import CommandError

from search.retrieval import providers
from search.retrieval.vector_store import IndexBusyError, IndexUnavailableError


def store_open(*, action: str, why: str) -> None:
    """Open the serving store before a command that searches it. Where the running server holds
    the embedded store, a CommandError says to stop it for `action` ("fit"), because `why` ("the
    fit searches the store"); a Qdrant server has no such limit."""
    try:
        providers.get_product_index().count()
    except IndexBusyError as exc:
        raise CommandError(
            f"{exc} Stop the server, {action}, and start it again: {why}, which one process holds "
            "(a Qdrant server has no such limit)."
        ) from exc
    except IndexUnavailableError as exc:
        raise CommandError(str(exc)) from exc


__all__ = ["store_open"]
