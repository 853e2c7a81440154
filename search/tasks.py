"""The queue: the tasks the workers run, and the functions that send them.

Tasks take ids, never model instances, and are safe to run twice (the Qdrant point id is the
product id, so a retry overwrites the same point). Indexing is announced by the catalog
(`catalog.signals.products_changed`, see search.receivers) and drained from the catalog's dirty
flag by the periodic sweep, so a broker outage at commit time loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone
from qdrant_client.http.exceptions import ResponseHandlingException

from catalog.models import Product
from catalog.outages import outage_reason
from catalog.services import import_jobs_resume_stalled
from search.retrieval.config import search_config
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.vector_store import IndexUnavailableError
from search.services import model_switch_advance, products_index, products_reindex_if_index_missing
from search.services.relevance import relevance_fit_if_due

logger = logging.getLogger(__name__)

EMBED_OPTIONS = {
    "autoretry_for": (ConnectionError, TimeoutError, ResponseHandlingException),
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_kwargs": {"max_retries": 5},
    "acks_late": True,
}


@shared_task(**EMBED_OPTIONS)
def embed_products_task(product_ids: list[int]) -> dict:
    """Embed and upsert these products (or remove their points); safe to run twice."""
    return products_index(product_ids=product_ids).as_dict()


@shared_task(acks_late=True)
def sweep_pending_products_task() -> int:
    """Re-send products still pending (bulk paths, broker outages); returns how many."""
    return products_sweep_pending()


@shared_task(acks_late=True)
def relevance_fit_task() -> str:
    """Fit the serving model's relevance model from the catalog when it is due (beat, the real
    stack); returns what happened."""
    row = relevance_fit_if_due()
    return "not due" if row is None else row.problem or "fitted"


# The embedded sweep looks whether the relevance model is due this often (a count and a row).
RELEVANCE_LOOK_SECONDS = 30.0
_relevance_looked = -1e9


def relevance_fit_now_and_then() -> None:
    """In the embedded sweep: fit the relevance model when it is due (services.relevance), after
    the pending products are indexed; searches keep the previous fit meanwhile."""
    global _relevance_looked
    if search_config().relevance_threshold > 0 and time.monotonic() - _relevance_looked >= RELEVANCE_LOOK_SECONDS:
        _relevance_looked = time.monotonic()
        relevance_fit_if_due()


def _batches(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


@dataclass
class Enqueued:
    """What products_enqueue handed to the broker: tasks sent, products left unsent (the broker
    refused or could not be reached: they stay pending for the sweep) and why."""

    sent: int = 0
    unsent: int = 0
    error: str = ""


# After a send the broker did not take, sends are skipped this long (seconds): with Redis down
# each one costs seconds (redis-py's reconnection tries), and every admin save would wait them out.
BROKER_REST_SECONDS = 30


class _BrokerState:
    """When this process last failed to reach the broker, so that an outage costs one wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.reason = ""

    def resting(self) -> str:
        """Why sends are skipped now, or "" when they may be tried."""
        with self.lock:
            return self.reason if time.monotonic() < self.down_until else ""

    def failed(self, reason: str) -> bool:
        """Note a failed send; True when it starts an outage (the first to log it)."""
        with self.lock:
            fresh = time.monotonic() >= self.down_until
            self.down_until, self.reason = time.monotonic() + BROKER_REST_SECONDS, reason
            return fresh

    def answered(self) -> None:
        with self.lock:
            self.down_until, self.reason = 0.0, ""


broker_state = _BrokerState()


def products_enqueue(*, product_ids: Sequence[int], batch_size: int | None = None) -> Enqueued:
    """Send embedding tasks for these ids in batches, and note on the rows when (the sweep does
    not send them again while that message may still arrive).

    A broker outage is logged, not raised: the rows stay pending and the periodic sweep
    sends them again, so a save never fails because the queue is down. After a send fails,
    this process skips sending for BROKER_REST_SECONDS, so only one save waits on a broker
    that does not answer.
    """
    ids = sorted({int(pk) for pk in product_ids if pk is not None})
    size = batch_size or search_config().index_batch_size
    result = Enqueued()
    for batch in _batches(ids, size):
        if resting := broker_state.resting():
            result.unsent += len(batch)
            result.error = result.error or f"the broker did not answer moments ago ({resting})"
            continue
        try:
            embed_products_task.apply_async(args=[batch], retry=False)
        except Exception as exc:  # kombu raises many types; all mean "not queued now"
            if broker_state.failed(str(exc)):
                logger.error(
                    "Could not queue indexing of %d products (%s); they stay pending and the sweep retries; "
                    "no sends are tried for %d s",
                    len(batch),
                    exc,
                    BROKER_REST_SECONDS,
                )
            result.unsent += len(batch)
            result.error = result.error or str(exc)
            continue
        broker_state.answered()
        result.sent += 1
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            Product.objects.filter(pk__in=batch).update(index_queued_at=timezone.now())
    return result


def products_sweep_pending(*, grace_seconds: int | None = None) -> int:
    """Queue products left pending longer than the grace period and not queued since the
    broker would have redelivered a lost message; returns how many."""
    grace = search_config().sweep_grace_seconds if grace_seconds is None else grace_seconds
    sessions_prune_now_and_then()
    started = timezone.now()
    # a changed model: flag what its store lacks, or serve it once the workers have filled it
    model_switch_advance()
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace)
    redelivered = now - timedelta(seconds=search_config().queue_redelivery_seconds)
    # rows this sweep flagged itself have no task of their own: they go now, not after the grace
    ids = list(
        Product.objects.pending()
        .filter(Q(updated_at__lte=cutoff) | Q(updated_at__gte=started))
        .filter(Q(index_queued_at__isnull=True) | Q(index_queued_at__lt=redelivered))
        .values_list("pk", flat=True)
    )
    if ids:
        products_enqueue(product_ids=ids)
    return len(ids)


_embedded_sweeper: threading.Thread | None = None
# Expired sessions (staff sign-ins; shoppers have none) are deleted this often by the sweep.
SESSION_PRUNE_SECONDS = 3600
_sessions_pruned = -1e9


def sessions_prune_now_and_then() -> None:
    """Delete expired sessions once an hour: Django leaves them to a `clearsessions` nobody runs."""
    global _sessions_pruned
    if time.monotonic() - _sessions_pruned >= SESSION_PRUNE_SECONDS:
        _sessions_pruned = time.monotonic()
        SessionStore.clear_expired()


def embedded_sweeper_start() -> threading.Thread | None:
    """In the embedded default (no broker), start the thread that indexes pending products in this
    process every SEARCH_EMBEDDED_SWEEP_SECONDS; call it from the server process, which holds the
    vector index. Changes written by other processes (a terminal import, a bulk update flagged with
    mark_pending) reach search this way. Returns the thread, or None with a broker configured
    (Celery beat's sweep does this there)."""
    global _embedded_sweeper
    if not settings.CELERY_TASK_ALWAYS_EAGER or search_config().embedded_sweep_seconds <= 0:
        return None
    if _embedded_sweeper is None or not _embedded_sweeper.is_alive():
        _embedded_sweeper = threading.Thread(
            target=_sweep_forever, args=(search_config().embedded_sweep_seconds,), name="embedded-sweeper", daemon=True
        )
        _embedded_sweeper.start()
    return _embedded_sweeper


def products_sweep_embedded(*, settle_seconds: float = 0) -> int:
    """One pass of the embedded server's sweep: rebuild a missing index from the database, then
    index products pending for longer than `settle_seconds`, here; returns how many."""
    sessions_prune_now_and_then()
    import_jobs_resume_stalled()  # an admin import whose server died goes on
    products_reindex_if_index_missing()
    model_switch_advance()  # a changed model: flag what its store lacks
    cutoff = timezone.now() - timedelta(seconds=settle_seconds)
    ids = list(
        Product.objects.pending().filter(updated_at__lte=cutoff).order_by("pk").values_list("pk", flat=True)[:10_000]
    )
    for batch in _batches(ids, search_config().index_batch_size):
        products_index(product_ids=batch)
    model_switch_advance()  # ...and serve it once it is complete
    if len(ids) < 10_000:  # a catalog still being indexed is fitted once it is in
        relevance_fit_now_and_then()
    return len(ids)


def _sweep_forever(interval: float) -> None:
    while True:
        time.sleep(interval)
        sweep_pass(interval)


def sweep_pass(interval: float, *, last: list[str] | None = None) -> None:
    """One pass of the embedded sweep that never raises. A store or model that cannot be used is
    said in one line when it starts failing (not a traceback every `interval` seconds: the search
    says so to shoppers too); anything else is logged with its traceback."""
    last = _sweep_failing if last is None else last
    try:
        close_old_connections()
        # Rows changed in this process are indexed at commit already; let them settle so the
        # sweep picks up what others left (indexing twice would be harmless, not free).
        products_sweep_embedded(settle_seconds=interval)
        if last:
            logger.warning("The embedded sweep works again.")
            last.clear()
    except (IndexUnavailableError, ModelUnavailableError) as exc:
        if str(exc) not in last:
            logger.warning("The embedded sweep cannot index (it tries again every %g s): %s", interval, exc)
            last[:] = [str(exc)]
    except Exception as exc:  # the thread must outlive a bad batch; the log says what happened
        if (reason := outage_reason(exc)) is None:
            logger.exception("The embedded sweep failed; it tries again in %s s", interval)
        elif reason not in last:  # a held or full database: said once, tried again
            logger.warning("The embedded sweep waits for the database (every %g s): %s", interval, reason)
            last[:] = [reason]
    finally:
        close_old_connections()


_sweep_failing: list[str] = []  # what the embedded sweep last said it could not do
