"""Simulated shoppers: real searches, clicks from a position-biased model of attention.

A shopper looks at position p with probability (1 / p) ** EXAMINATION_DECAY, clicks what
they look at with a probability that grows with its relevance grade, and after a click
stops reading with probability STOP_AFTER_CLICK. These are the usual shapes of click models
(position-based with cascade stopping); the constants are illustrative, not fitted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from search.selectors.experiments import experiment_search
from search.services import click_log, search_event_log

EXAMINATION_DECAY = 0.8
CLICK_BY_GRADE = {0: 0.02, 1: 0.08, 2: 0.35, 3: 0.8}
STOP_AFTER_CLICK = 0.6
PAGE_SIZE = 20


@dataclass
class SimulationReport:
    sessions: int = 0
    searches: int = 0
    clicks: int = 0
    logged: int = 0


def shopper_clicks(grades: Sequence[int], rng: random.Random) -> list[int]:
    """Which of a list's products (their grades, top first) one shopper clicks: the indexes,
    top down. Position p is looked at with probability (1 / p) ** EXAMINATION_DECAY, until a
    click stops the reading."""
    clicked = []
    for index, grade in enumerate(grades):
        if rng.random() > (1.0 / (index + 1)) ** EXAMINATION_DECAY:
            continue
        if rng.random() < CLICK_BY_GRADE.get(grade, 0.0):
            clicked.append(index)
            if rng.random() < STOP_AFTER_CLICK:
                break
    return clicked


def shoppers_simulate(
    *,
    queries: Sequence[dict],
    sessions: int,
    seed: int,
    strategy: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Run `sessions` shoppers, each one search and its clicks, into the real search and click log.

    Shoppers type the semantic queries (queries.jsonl's other kinds, SKUs, typos and nonsense,
    are for evaluate_search), so the click logs, and the fine-tuning results in docs/quality.md,
    are the same as before those kinds were written."""
    rng = random.Random(seed)
    report = SimulationReport()
    queries = [q for q in queries if q.get("kind", "semantic") == "semantic"]
    for number in range(sessions):
        query = rng.choice(queries)
        grades = {sku: int(g) for sku, g in query["relevance"].items()}
        # the same session key a shopper's visit gives: inside a running experiment, its arm
        session = f"sim-{seed}-{number}"
        result = experiment_search(session_key=session, query=query["query"], strategy=strategy, page_size=PAGE_SIZE)
        report.sessions += 1
        report.searches += 1
        if search_event_log(result=result, channel="simulated", session_key=session):
            report.logged += 1
        else:
            continue
        for index in shopper_clicks([grades.get(hit.product.sku, 0) for hit in result.hits], rng):
            click_log(search_id=result.search_id, product_id=result.hits[index].product.pk, session_key=session)
            report.clicks += 1
        if progress:
            progress(1)
    return report
