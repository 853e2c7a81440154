"""Saving the merchandiser's ranking rules: a pin may take a position of a query only once (the
form says so first; the database's constraint refuses what two saves at once would let through)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from search.models import RankingRule, query_key


def rule_pin_clash(*, rule: RankingRule) -> RankingRule | None:
    """The active pin of another rule at this rule's position for the same query (compared word
    by word), if this rule is an active pin and there is one."""
    if rule.action != RankingRule.Action.PIN or not rule.active or rule.position is None:
        return None
    return (
        RankingRule.objects.filter(
            active=True,
            action=RankingRule.Action.PIN,
            match=rule.match,
            query_key=query_key(rule.query),
            position=rule.position,
        )
        .exclude(pk=rule.pk)
        .select_related("product")
        .first()
    )


def pin_clash_message(clash: RankingRule) -> str:
    return (
        f"{clash.product.sku if clash.product else 'Another product'} is already pinned at position "
        f"{clash.position} for this query (rule {clash.pk}): choose another position."
    )


def ranking_rule_save(*, rule: RankingRule) -> RankingRule:
    """Save the rule; ValidationError (on `position`) when a pin's position is taken."""
    clash = rule_pin_clash(rule=rule)
    if clash is not None:
        raise ValidationError({"position": pin_clash_message(clash)})
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:  # another save took the position between the look and this one
        clash = rule_pin_clash(rule=rule)
        if clash is None:
            raise
        raise ValidationError({"position": pin_clash_message(clash)}) from None
    return rule


__all__ = ["pin_clash_message", "ranking_rule_save", "rule_pin_clash"]
