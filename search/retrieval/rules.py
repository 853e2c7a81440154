"""A merchandiser's ranking rules, applied to the fused ranking of a word search.

- **hide**: the product is not shown for the query (whatever the sort);
- **boost** / **bury**: products whose brand, category or attribute holds a value move up or
  down by a strength. A boost of strength s moves a product at position p to
  1 + (p - 1) * (1 - s): 100% puts it first (among the boosted, in relevance order), 50% halves
  its distance from the top. A bury moves it to p / (1 - s): 50% doubles its position, 100%
  puts it last. Positions, not scores: the rule means the same under every fusion and
  calibration, whose scores live on different scales;
- **pin**: the product is shown at that position (the last one when fewer products match),
  even when the query does not match it, as long as it passes the shopper's filters.

Boosts, buries and pins are the relevance order's: a shopper who sorts by price gets the price
order, with hidden products still hidden. Where rules disagree, a hide beats a pin, a bury a
boost, and of two pins of one product the lower position wins. Pure Python: no Django.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .fusion import Ranked

PIN, HIDE, BOOST, BURY = "pin", "hide", "boost", "bury"
ACTIONS = (PIN, HIDE, BOOST, BURY)
# What an impression records of a product a rule placed (the click log and its exports read it)
PLACEMENTS = {PIN: "pinned", BOOST: "boosted", BURY: "buried"}


@dataclass(frozen=True)
class Rule:
    id: int
    action: str
    product_id: int | None = None  # pin, hide
    position: int | None = None  # pin: 1 is the first result
    field: str = ""  # boost, bury: the payload field (brand, category, attr_<key>)
    value: str = ""  # ... and the folded value it must hold (facets.facet_key)
    strength: float = 0.5  # boost, bury: 0 < strength <= 1

    def holds(self, payload: Mapping) -> bool:
        """Whether a product's payload holds the boosted or buried value."""
        held = payload.get(self.field)
        if isinstance(held, (list, tuple)):
            return self.value in held
        return held is not None and str(held) == self.value


@dataclass
class Applied:
    ranked: list[Ranked]
    placements: dict[int, str] = field(default_factory=dict)  # product id -> "pinned", "boosted", "buried"
    rule_ids: list[int] = field(default_factory=list)  # the rules that changed what is shown, or where
    hidden: set[int] = field(default_factory=set)
    inserted: set[int] = field(default_factory=set)  # pinned products the query did not match


def _moved(position: float, strength: float, action: str) -> float:
    if action == BOOST:
        return 1.0 + (position - 1.0) * (1.0 - strength)
    return math.inf if strength >= 1.0 else position / (1.0 - strength)


def rules_apply(
    ranked: list[Ranked], rules: Iterable[Rule], *, relevance: bool = True, pinnable: Mapping[int, Ranked] | None = None
) -> Applied:
    """The ranking with the rules applied. `relevance`: the results are in relevance order
    (boosts, buries and pins apply); `pinnable`: the pinned products the query did not match
    that may be shown (active, and passing the shopper's filters), as entries to insert."""
    rules = sorted(rules, key=lambda r: r.id)
    hidden = {r.product_id for r in rules if r.action == HIDE}
    out = Applied(ranked=[r for r in ranked if r.id not in hidden])
    present = {r.id for r in ranked}
    out.hidden = hidden & present
    out.rule_ids = [r.id for r in rules if r.action == HIDE and r.product_id in present]
    if not relevance:
        return out

    shifts = [r for r in rules if r.action in (BOOST, BURY)]
    if shifts:
        keyed = []
        for i, entry in enumerate(out.ranked):
            position, net = float(i + 1), 0
            # boosts first, then buries: a product both boosted and buried fully ends last
            for rule in sorted(shifts, key=lambda r: (r.action == BURY, r.id)):
                if rule.holds(entry.payload):
                    position = _moved(position, rule.strength, rule.action)
                    net += 1 if rule.action == BURY else -1
                    if rule.id not in out.rule_ids:
                        out.rule_ids.append(rule.id)
            if net:
                out.placements[entry.id] = PLACEMENTS[BURY if net > 0 else BOOST]
            # on a tie, a boosted product goes before and a buried one after the product it meets
            keyed.append((position, net, i, entry))
        out.ranked = [entry for *_, entry in sorted(keyed, key=lambda k: k[:3])]

    pins: dict[int, tuple[int, int]] = {}  # product id -> (position, rule id): the lower position wins
    for rule in rules:
        if rule.action == PIN and rule.product_id not in hidden and rule.position:
            if rule.product_id not in pins or rule.position < pins[rule.product_id][0]:
                pins[rule.product_id] = (rule.position, rule.id)
    if pins:
        by_id = {r.id: r for r in out.ranked}
        for product_id, _ in pins.items():
            if product_id not in by_id and product_id in (pinnable or {}):
                by_id[product_id] = pinnable[product_id]
                out.inserted.add(product_id)
        placed = sorted((position, rule_id, pid) for pid, (position, rule_id) in pins.items() if pid in by_id)
        rest = [r for r in out.ranked if r.id not in pins]
        for position, rule_id, pid in placed:
            rest.insert(min(position - 1, len(rest)), by_id[pid])
            out.placements[pid] = PLACEMENTS[PIN]
            out.rule_ids.append(rule_id)
        out.ranked = rest
    out.rule_ids = sorted(set(out.rule_ids))
    return out


__all__ = ["ACTIONS", "BOOST", "BURY", "HIDE", "PIN", "PLACEMENTS", "Applied", "Rule", "rules_apply"]
