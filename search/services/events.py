"""Recording searches and clicks. Logging never makes a search fail."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import Product
from catalog.outages import outage_reason
from search.models import Click, Experiment, SearchEvent, SearchImpression
from search.retrieval.config import search_config
from search.selectors import SearchFilters, SearchResult, query_normalize

logger = logging.getLogger(__name__)


def session_pseudonym(session_key: str | None) -> str:
    """Keyed hash of a session key: stable within a visit, not reversible without the key."""
    if not session_key:
        return ""
    key = (search_config().log_hash_key or settings.SECRET_KEY).encode()
    return hmac.new(key, session_key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LoggedSearch:
    """What the log keeps of a search: the request, its count and the page shown. Queued for
    the writer instead of the SearchResult, which holds every match (up to SEARCH_MAX_MATCHES)
    with its scores and payload, and the page's product rows."""

    search_id: str
    mode: str
    query: str
    filters: SearchFilters
    sort: str
    strategy: str
    model_id: str
    page: int
    page_size: int
    count: int
    merchandising: dict
    day: date
    at: datetime  # when it was searched (written maybe later)
    # (product id, sku, position, score, placement, team) of each product shown
    shown: tuple[tuple[int, str, int, float | None, str, str], ...]
    experiment: str = ""
    arm: str = ""
    swap_probability: float = 0.0
    swapped_at: int | None = None

    @classmethod
    def of(cls, result: SearchResult) -> LoggedSearch:
        from search.retrieval.providers import embedding_model_id

        return cls(
            search_id=result.search_id,
            mode=result.mode,
            query=result.query,
            filters=result.filters,
            sort=result.sort,
            strategy=result.strategy,
            model_id=result.model_id or embedding_model_id(),
            page=result.page,
            page_size=result.page_size,
            count=result.count,
            merchandising=dict(result.merchandising),
            day=timezone.localdate(),
            at=timezone.now(),
            shown=tuple(
                (hit.product.pk, hit.product.sku, hit.position, hit.score, hit.placement, hit.team)
                for hit in result.hits
            ),
            experiment=result.experiment,
            arm=result.arm,
            swap_probability=result.swap_probability,
            swapped_at=result.swapped_at,
        )


def _search_rows(
    search: LoggedSearch, channel: str, session_key: str | None
) -> tuple[SearchEvent, list[SearchImpression]]:
    filters = {
        "category": list(search.filters.categories),
        "brand": list(search.filters.brands),
        "price_min": str(search.filters.price_min) if search.filters.price_min is not None else None,
        "price_max": str(search.filters.price_max) if search.filters.price_max is not None else None,
    }
    if search.filters.attributes:  # payload field ("attr_colour") -> the chosen values, folded
        filters["attributes"] = {name: list(values) for name, values in search.filters.attributes}
    if search.filters.open:  # the fields whose values the query's words named, not the shopper's clicks
        filters["read"] = list(search.filters.open)
    event = SearchEvent(
        id=uuid.UUID(search.search_id),
        channel=channel,
        mode=search.mode,
        query=search.query[:500],
        query_normalized=query_normalize(search.query).lower()[:500],
        filters=filters,
        sort=search.sort,
        strategy=search.strategy,
        model_id=search.model_id[:255],
        page=search.page,
        page_size=search.page_size,
        result_count=search.count,
        session_hash=session_pseudonym(session_key),
        day=search.day,
        merchandising=search.merchandising,
        created_at=search.at,
        experiment=search.experiment,
        arm=search.arm,
        swap_probability=search.swap_probability,
        swapped_at=search.swapped_at,
    )
    impressions = [
        SearchImpression(
            search=event,
            product_id=pk,
            product_sku=sku,
            position=position,
            score=score,
            placement=placement,
            team=team,
        )
        for pk, sku, position, score, placement, team in search.shown
    ]
    return event, impressions


# a search of the same visit with the same words this soon after the last is a refinement of it
REFINE_WITHIN = timedelta(minutes=30)


def _link_refinements(events: list[SearchEvent]) -> None:
    """Mark each search that refines the visit's search just before it (the same words and
    kind: a filter, a sort or a page changed) with the first search of the run."""
    last: dict[str, SearchEvent] = {}
    for event in events:
        if not event.session_hash or event.mode not in ("text", "browse"):
            continue
        before = last.get(event.session_hash)
        if before is None:
            before = (
                SearchEvent.objects.filter(session_hash=event.session_hash, created_at__lte=event.created_at)
                .only("id", "mode", "query_normalized", "refines", "created_at")
                .order_by("-created_at")
                .first()
            )
        if (
            before is not None
            and before.mode == event.mode
            and before.query_normalized == event.query_normalized
            and event.created_at - before.created_at <= REFINE_WITHIN
        ):
            event.refines = before.refines or before.id
        last[event.session_hash] = event


def _write_searches(rows: list[tuple[SearchEvent, list[SearchImpression]]]) -> None:
    with transaction.atomic():
        _link_refinements([event for event, _ in rows])
        SearchEvent.objects.bulk_create([event for event, _ in rows])
        SearchImpression.objects.bulk_create([i for _, impressions in rows for i in impressions])


# What a search typed keystroke by keystroke is, for the log (the storefront's X-Search-Typing):
# the first of a run of keystrokes, or one more of the run (its predecessor was a prefix).
TYPING = ("start", "continue")


def search_event_log(
    *, result: SearchResult, channel: str, session_key: str | None, deferred: bool = False, typing: str | None = None
) -> bool:
    """Record a search with what it showed; returns False (and logs why) if that failed.

    `deferred` (the web views, with SEARCH_LOG_DEFERRED): hand the rows to this process's log
    writer and answer the shopper without waiting for the database; a click on the search waits
    for them (`click_log`). `typing` ("start" | "continue", as the shopper types): the search is
    held until it settles (no more keystrokes for SEARCH_SETTLE_SECONDS, another kind of search
    from the same visit, or a click on it); one that more keystrokes replace is never written."""
    if result.experiment_failed:
        _experiment_failure(result.experiment, result.experiment_failed)
    try:
        search = LoggedSearch.of(result)
        if deferred and search_config().log_deferred:
            return _writer().put(search, channel, session_key, typing=typing if typing in TYPING else None)
        _write_searches([_search_rows(search, channel, session_key)])
    except Exception:  # the shopper still gets results; the operator gets the traceback
        logger.exception("Could not record search %s", result.search_id)
        return False
    return True


def _experiment_failure(name: str, reason: str) -> None:
    """Count a search whose candidate ranking failed on its experiment, with the reason."""
    try:
        Experiment.objects.filter(name=name).update(failures=F("failures") + 1, last_failure=reason)
    except Exception:  # the shopper has the control's list; the log line says the rest
        logger.exception("Could not count the failure of experiment %s", name)


class _Pending(NamedTuple):
    item: tuple  # (LoggedSearch, channel, session_key), as queued
    written: threading.Event


class _Outage(Exception):
    """The database cannot take the log now (catalog.outages): the message says why."""


@dataclass(frozen=True)
class QueuedClick:
    """A click checked against its search, written by the log writer once the database is free."""

    search_id: uuid.UUID
    product_id: int
    product_sku: str
    position: int
    at: datetime  # when it was clicked


def _click_insert(click: QueuedClick) -> Click:
    """Store the click, and count it on its search (the insights read it there, with no join).

    Raises:
        IntegrityError: this click is stored already (or its product is gone).
    """
    with transaction.atomic():
        stored = Click.objects.create(
            search_id=click.search_id,
            product_id=click.product_id,
            product_sku=click.product_sku,
            position=click.position,
            created_at=click.at,
        )
        # the click counts on its search and on the search it refines (what the insights count)
        refines = SearchEvent.objects.filter(pk=click.search_id).values_list("refines", flat=True).first()
        SearchEvent.objects.filter(pk__in=[click.search_id, *([refines] if refines else [])]).update(
            click_count=F("click_count") + 1, click_position_sum=F("click_position_sum") + click.position
        )
    return stored


def _click_write(click: QueuedClick) -> None:
    """A queued click, written by the log writer once the database is free."""
    try:
        _click_insert(click)
    except IntegrityError:  # clicked twice, or its product deleted meanwhile: kept once, or not at all
        pass
    except DatabaseError as exc:
        if (reason := outage_reason(exc)) is not None:
            raise _Outage(reason) from exc
        logger.exception("Could not record a click on search %s", click.search_id)


class _SearchLogWriter:
    """One thread per process writing the search log in batches, off the request path.

    A batch is whatever queued while the last one was written (one transaction: under load
    that is fewer writes to fight merchandisers' saves for SQLite's one writer). A batch that
    fails is written search by search, so one bad row (a product deleted meanwhile) costs only
    its own impressions' product link. What is queued when the process exits is written then.

    A database that cannot take the write (held by another process, or its disk full:
    catalog.outages) is waited out: the batch is kept and tried again with a growing pause, what
    comes meanwhile is queued (clicks too, `put_click`), and nothing is dropped unless the queue
    reaches MAX_HELD."""

    MAX_QUEUED = 10_000
    MAX_HELD = 200_000  # searches and clicks held through an outage (a few hundred MB at most)
    RETRY_PAUSES = (1, 2, 5, 10)  # seconds: written within 10 s of the database being free

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        # what was queued and is not written yet, by search id: its queued item (a click on it
        # is checked against that) and the event set once it is written
        self.pending: dict[uuid.UUID, _Pending] = {}
        # per visit, the search being typed: (queued item, when), written once it settles
        self.held: dict[str, tuple[tuple, float]] = {}
        self.outage = ""  # why the database cannot take the log now ("" when it can)
        self.dropped = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="search-log-writer", daemon=True)
        self.thread.start()
        atexit.register(self.flush)

    def put(self, search: LoggedSearch, channel: str, session_key: str | None, *, typing: str | None = None) -> bool:
        """Queue the search; its rows are built in the writer thread, off the request path. A
        typed one is held per visit: the next keystroke's search replaces it (a prefix is counted
        nowhere); anything else from the visit, or time, settles it."""
        item = (search, channel, session_key)
        visit = session_key or ""
        with self.lock:
            earlier = self.held.pop(visit, None)
            if earlier is not None:
                if typing == "continue":  # a prefix: dropped
                    self.pending.pop(uuid.UUID(earlier[0][0].search_id), None)
                else:
                    self.queue.put(earlier[0])  # it settled: this is another search
            self.pending[uuid.UUID(search.search_id)] = _Pending(item, threading.Event())
            if typing is not None and visit:
                self.held[visit] = (item, time.monotonic())
                return True
        if self.outage:
            return self._hold(item)
        if self.queue.qsize() >= self.MAX_QUEUED:  # the database is not keeping up: wait for it
            _write_searches([_search_rows(*item)])
            self._written([search])
            return True
        self.queue.put(item)
        return True

    def put_click(self, click: QueuedClick) -> bool:
        """Queue a click checked against its search, to be written once the database is free."""
        return self._hold(click)

    def _hold(self, item) -> bool:
        if self.queue.qsize() >= self.MAX_HELD:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.error(
                    "The search log holds %d items through an outage (%s); %d dropped",
                    self.MAX_HELD,
                    self.outage,
                    self.dropped,
                )
            return False
        self.queue.put(item)
        return True

    def unwritten_search(self, search_id: uuid.UUID) -> tuple | None:
        """(LoggedSearch, channel, session_key) of a search queued and not written yet."""
        with self.lock:
            pending = self.pending.get(search_id)
        return pending.item if pending is not None else None

    def settle(self, *, search_id: uuid.UUID | None = None, now: float | None = None) -> None:
        """Queue the held searches that settled: quiet for SEARCH_SETTLE_SECONDS, the one with
        this id (a click on it), or all of them (`now` = infinity, at exit)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            for visit, (item, at) in list(self.held.items()):
                if now - at >= search_config().settle_seconds or uuid.UUID(item[0].search_id) == search_id:
                    del self.held[visit]
                    self.queue.put(item)

    def wait_for(self, search_id: uuid.UUID, timeout: float = 5.0) -> bool:
        """Wait until the search is written, if this process holds it; False if it does not hold
        it (never had it, or has written it already). A held search is settled by the wait."""
        self.settle(search_id=search_id)
        with self.lock:
            pending = self.pending.get(search_id)
        return pending is not None and pending.written.wait(timeout)

    def flush(self, *, settle: bool = True) -> None:
        """Write everything queued now, in this thread (at exit, and in tests); with `settle`,
        the searches still being typed too."""
        if settle:
            self.settle(now=float("inf"))
        while batch := self._drain(block=False):
            try:
                self._write(batch)
            except _Outage as outage:
                logger.error("%d searches and clicks could not be written: %s", len(batch) + self.queue.qsize(), outage)
                return

    def _drain(self, *, block: bool) -> list:
        batch = []
        try:
            # wake up now and then to settle what is being typed
            batch.append(self.queue.get(block=block, timeout=SETTLE_LOOK_SECONDS if block else None))
            while len(batch) < 500:
                batch.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _run(self) -> None:
        batch: list = []
        failures = 0
        while True:
            self.settle()
            batch = batch or self._drain(block=True)
            if not batch:
                continue
            try:
                self._write(batch)
            except _Outage as outage:  # kept: tried again after a pause
                if not self.outage:
                    logger.warning("The search log waits for the database: %s (%d queued)", outage, len(batch))
                self.outage = str(outage)
                time.sleep(self.RETRY_PAUSES[min(failures, len(self.RETRY_PAUSES) - 1)])
                failures += 1
                connection.close()
                continue
            except Exception:  # never let the writer die: log and go on
                logger.exception("The search log writer failed a batch of %d", len(batch))
            if self.outage:
                logger.warning("The search log is written again (%s is over)", self.outage)
                self.outage, failures = "", 0
            batch = []
            if self.queue.empty():
                connection.close()  # idle: hold no connection (PostgreSQL counts them)

    def _write(self, queued: list) -> None:
        """Write a batch: its searches in one transaction, then its clicks.

        Raises:
            _Outage: the database cannot take it now; nothing of the batch is lost or marked done.
        """
        searches = [item for item in queued if not isinstance(item, QueuedClick)]
        batch = []
        for search, channel, session_key in searches:
            try:
                batch.append(_search_rows(search, channel, session_key))
            except Exception:
                logger.exception("Could not record search %s", search.search_id)
        try:
            _write_searches(batch)
        except Exception as exc:
            connection.close()  # a broken connection is reopened by the next query
            if (reason := outage_reason(exc)) is not None:
                raise _Outage(reason) from exc
            for rows in batch:
                self._write_one(rows)
        self._written([search for search, _, _ in searches])
        for click in (item for item in queued if isinstance(item, QueuedClick)):
            _click_write(click)

    def _written(self, searches: list[LoggedSearch]) -> None:
        """These searches are in the database (or never will be): clicks waiting for them go on."""
        with self.lock:
            done = [self.pending.pop(uuid.UUID(search.search_id), None) for search in searches]
        for pending in done:
            if pending is not None:
                pending.written.set()

    def _write_one(self, rows: tuple[SearchEvent, list[SearchImpression]]) -> None:
        event, impressions = rows
        try:
            _write_searches([rows])
        except DatabaseError as exc:
            if (reason := outage_reason(exc)) is not None:
                raise _Outage(reason) from exc
            if not isinstance(exc, IntegrityError):
                logger.exception("Could not record search %s", event.id)
                return
            # a product deleted since it was shown: keep the row, not the link
            existing = set(
                Product.objects.filter(pk__in=[i.product_id for i in impressions]).values_list("pk", flat=True)
            )
            for impression in impressions:
                if impression.product_id not in existing:
                    impression.product_id = None
            try:
                _write_searches([rows])
            except Exception:
                logger.exception("Could not record search %s", event.id)
        except Exception:
            logger.exception("Could not record search %s", event.id)


SETTLE_LOOK_SECONDS = 0.5
_writers: dict[int, _SearchLogWriter] = {}
_writers_lock = threading.Lock()


def _writer() -> _SearchLogWriter:
    """This process's writer (a forked worker starts its own)."""
    pid = os.getpid()
    writer = _writers.get(pid)
    if writer is None:
        with _writers_lock:
            writer = _writers.get(pid)
            if writer is None:
                writer = _writers[pid] = _SearchLogWriter()
    return writer


def search_log_flush() -> None:
    """Write what this process has queued for the search log, now."""
    writer = _writers.get(os.getpid())
    if writer is not None:
        writer.flush()
        with writer.lock:
            waiting = list(writer.pending.values())
        for pending in waiting:
            pending.written.wait(5.0)


class ClickError(ValueError):
    """The click names something that does not exist, or may not be counted; the message says
    what, and `status` the HTTP answer: 404 what it names does not exist, 403 the search exists
    but this click may not count for it (another session's search, or one too old), 409 it
    contradicts the search."""

    def __init__(self, field: str, message: str, *, status: int = 404):
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class ClickOutcome:
    click: Click | None  # None while it is queued
    created: bool
    queued: bool = False  # written once the database is free
    position: int | None = None

    def __post_init__(self) -> None:
        if self.position is None and self.click is not None:
            object.__setattr__(self, "position", self.click.position)


def click_log(
    *,
    search_id: str,
    product_id: int | None = None,
    sku: str | None = None,
    position: int | None = None,
    session_key: str | None = None,
) -> ClickOutcome:
    """Record a click on a product shown by a search; a repeat of the same click is kept once.
    It counts only from the session that ran the search (`session_key`, compared by its keyed
    hash; a search run without one takes no clicks) and within SEARCH_CLICK_WINDOW_SECONDS of it:
    the click log is what fine-tuning learns from, and search ids are in every results page.

    While the database cannot take writes (catalog.outages), a click checked against its search
    (in the database, or still queued in this process's log writer) is queued with the log and
    written when the database is free: its outcome says `queued`."""
    field = "product_id" if product_id is not None else "sku"
    writer = _writers.get(os.getpid())
    held = _held_search(writer, search_id)
    if held is not None:  # its search waits in the log writer for the database
        search, _, held_session = held
        _click_allowed(session_pseudonym(held_session) if held_session else "", timezone.now(), session_key)
        product = _clicked_product(product_id, sku, field)
        shown = next((pos for _, shown_sku, pos, _, _, _ in search.shown if shown_sku == product.sku), None)
        shown = _click_position(shown, position, field)
        return _queued(writer, QueuedClick(uuid.UUID(search.search_id), product.pk, product.sku, shown, timezone.now()))
    try:
        event = _clicked_search(search_id, session_key)
    except ClickError:  # not in the database: the writer may have found it busy meanwhile
        if _held_search(writer, search_id) is None:
            raise
        return click_log(
            search_id=search_id, product_id=product_id, sku=sku, position=position, session_key=session_key
        )
    product = _clicked_product(product_id, sku, field)
    shown = event.impressions.filter(product_sku=product.sku).values_list("position", flat=True).first()
    shown = _click_position(shown, position, field)
    click = QueuedClick(event.pk, product.pk, product.sku, shown, timezone.now())
    if writer is not None and writer.outage:
        return _queued(writer, click)
    try:
        return ClickOutcome(_click_insert(click), True)
    except IntegrityError:
        return ClickOutcome(Click.objects.get(search=event, product_sku=product.sku), False)
    except DatabaseError as exc:
        if outage_reason(exc) is None:
            raise
        return _queued(_writer(), click)


def _held_search(writer: _SearchLogWriter | None, search_id: str) -> tuple | None:
    if writer is None or not writer.outage:
        return None
    try:
        return writer.unwritten_search(uuid.UUID(str(search_id)))
    except ValueError:
        return None


def _clicked_product(product_id: int | None, sku: str | None, field: str) -> Product:
    product = (
        Product.objects.filter(pk=product_id).first()
        if product_id is not None
        else Product.objects.filter(sku=sku).first()
        if sku
        else None
    )
    if product is None:
        raise ClickError(field, "No such product.")
    return product


def _click_position(shown: int | None, position: int | None, field: str) -> int:
    if shown is None:
        raise ClickError(field, "This product was not shown by that search.", status=409)
    if position is not None and position != shown:
        raise ClickError("position", f"The product was shown at position {shown}, not {position}.", status=409)
    return shown


def _queued(writer: _SearchLogWriter, click: QueuedClick) -> ClickOutcome:
    if not writer.put_click(click):
        raise ClickError("search_id", "Clicks cannot be recorded right now; please try again later.", status=503)
    return ClickOutcome(None, True, queued=True, position=click.position)


def _clicked_search(search_id: str, session_key: str | None) -> SearchEvent:
    """The search a click names, if this session ran it within the click window (ClickError)."""
    try:
        key = uuid.UUID(str(search_id))
        event = SearchEvent.objects.filter(pk=key).first()
        if event is None and (writer := _writers.get(os.getpid())) is not None:
            # a click quicker than the log writer: wait for it if it still holds the search, and
            # look again either way (it may have written it since the first look)
            writer.wait_for(key)
            event = SearchEvent.objects.filter(pk=key).first()
    except ValueError:
        event = None
    if event is None:
        raise ClickError("search_id", "No search with this id.")
    _click_allowed(event.session_hash, event.created_at, session_key)
    return event


def _click_allowed(session_hash: str, created_at, session_key: str | None) -> None:
    """Raise ClickError unless a click from this session may count for a search made by the
    session with this hash at that time."""
    if not session_hash:
        raise ClickError(
            "search_id",
            "This search was made without a session, so no click can be counted for it: "
            "send X-Session-Id with the search and the same with its clicks.",
            status=403,
        )
    if not session_key:
        raise ClickError(
            "search_id",
            "This click names no session: send the X-Session-Id the search was made with "
            "(the storefront sends its visit cookie).",
            status=403,
        )
    if not hmac.compare_digest(session_hash, session_pseudonym(session_key)):
        raise ClickError(
            "search_id", "This search was run in another session; only its own session's clicks count.", status=403
        )
    if timezone.now() - created_at > timedelta(seconds=search_config().click_window_seconds):
        raise ClickError(
            "search_id",
            f"This search is more than {search_config().click_window_seconds // 60} "
            "minutes old; its clicks no longer count.",
            status=403,
        )


def search_logs_prune(*, older_than_days: int, batch_size: int = 1000) -> int:
    """Delete searches (with their impressions and clicks) older than the cut-off; returns how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(SearchEvent.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        SearchEvent.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
