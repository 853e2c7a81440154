"""Counts and facets remembered between writes, for an engine that is the only writer of its
store (the embedded engines, which one process holds): facets cost more than the search itself
on a large catalog (100k products: 40-70 ms each, filtered, exact), and only a write through
the engine can change them. A write does not forget them: it reads the old payload of the
points it writes, and each remembered count moves by the points that left or joined its filter.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .types import Where

T = TypeVar("T")
# A facet is remembered whole (every value) when it has fewer values than this
FACET_VALUES = 512


class CountMemo:
    """Remembered counts, facets and the stored model, each tagged with the generation of writes
    it was read in: a read that a write overtook does not store what it saw."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: OrderedDict = OrderedDict()
        self.generation = 0
        self.lock = threading.Lock()

    def forget(self) -> None:
        """After a write the memo cannot follow (a drop, a new collection): forget it all."""
        with self.lock:
            self.generation += 1
            self.values.clear()

    def remembered(self, key: tuple, compute: Callable[[], T]) -> T:
        seen = self.generation
        hit = self.values.get(key)
        if hit is not None and hit[0] == seen:
            return hit[1]
        value = compute()
        with self.lock:
            if self.generation == seen:  # no write began meanwhile: the value holds for this generation
                self.values[key] = (seen, value)
                while len(self.values) > self.size:
                    self.values.popitem(last=False)
        return value

    def written(
        self,
        ids: Sequence[int],
        write: Callable[[], None],
        states: Callable[[Sequence[int], bool], dict[int, PointState]],
        new: Callable[[dict[int, PointState]], dict[int, PointState | None]],
        *,
        budget: int,
    ) -> None:
        """Run a write of the points `ids`, keeping what is remembered true: `states` reads the
        points' state before (with vector names if asked), `new` gives each point's state after
        the write (None: the point is gone). Past `budget` remembered values x points, moving them
        costs more than asking again: they are forgotten."""
        if not self.values or len(self.values) * len(ids) > budget:
            write()
            self.forget()
            return
        with self.lock:
            self.generation += 1  # reads that began before the write do not store what they saw
            mine = self.generation
            kept = {key: value for key, (tag, value) in self.values.items() if tag == mine - 1}
        try:
            before = states(ids, any(_uses_vectors(key) for key in kept))
            write()
        except BaseException:
            self.forget()
            raise
        after = new(before)
        moved = {key: _moved(key, value, before, after, FACET_VALUES) for key, value in kept.items()}
        with self.lock:
            self.generation += 1
            self.values.clear()
            if self.generation == mine + 1:  # no other write began meanwhile, or it is not counted
                for key, value in moved.items():
                    if value is not None:
                        self.values[key] = (self.generation, value)


@dataclass(frozen=True)
class PointState:
    """What a point's membership in a filter depends on: its payload and (if known) its vectors."""

    payload: Mapping[str, Any]
    vectors: frozenset[str] | None = None


def _memo_where(key: tuple) -> Where | None:
    """The filter of a remembered count ("count", where) or facet ("facet", key, where)."""
    return key[2] if key[0] == "facet" else key[1] if key[0] == "count" else None


def _uses_vectors(key: tuple) -> bool:
    where = _memo_where(key)
    return bool(where and where.has_vector)


def _values(payload: Mapping[str, Any], key: str) -> list[Any]:
    value = payload.get(key)
    return list(value) if isinstance(value, list) else [] if value is None else [value]


def _under(where: Where | None, pid: int, state: PointState | None) -> bool | None:
    """Whether the point is under `where` as an engine decides it; None if this cannot tell."""
    if state is None:
        return False
    if not where:
        return True
    if where.ids and pid not in where.ids or pid in where.not_ids:
        return False
    for key, allowed in where.any_of:
        if not any(
            isinstance(v, (str, int)) and not isinstance(v, bool) and v in allowed for v in _values(state.payload, key)
        ):
            return False
    for key, allowed in where.any_or_empty:
        held = _values(state.payload, key)
        if held and not any(isinstance(v, (str, int)) and not isinstance(v, bool) and v in allowed for v in held):
            return False
    for key, gte, lte in where.ranges:
        if not any(
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and (gte is None or v >= gte)
            and (lte is None or v <= lte)
            for v in _values(state.payload, key)
        ):
            return False
    if where.has_vector:
        if state.vectors is None:
            return None
        return where.has_vector in state.vectors
    return True


def _moved(
    key: tuple, value: Any, before: Mapping[int, PointState], after: Mapping[int, PointState | None], facet_values: int
) -> Any:
    """A remembered count or facet after a write changed `before` into `after`; None: forget it."""
    kind, where = key[0], _memo_where(key)
    if kind not in ("count", "facet"):
        return None
    if kind == "count":
        for pid in set(before) | set(after):
            was, now = _under(where, pid, before.get(pid)), _under(where, pid, after.get(pid))
            if was is None or now is None:
                return None
            value += int(now) - int(was)
        return value
    counts, complete = value
    if not complete:
        return None
    counts = dict(counts)
    facet_key = key[1]
    for pid in set(before) | set(after):
        for state, sign in ((before.get(pid), -1), (after.get(pid), 1)):
            under = _under(where, pid, state)
            if under is None:
                return None
            if not under:
                continue
            values = set(_values(state.payload, facet_key))
            if any(not isinstance(v, str) for v in values):
                return None  # facets here are on keyword keys; anything else is asked again
            for v in values:
                counts[v] = counts.get(v, 0) + sign
    counts = {v: n for v, n in counts.items() if n > 0}
    return (counts, True) if len(counts) < facet_values else None  # else: not whole any more
