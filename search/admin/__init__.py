"""The serving app's admin pages: `insights` (what shoppers search for), `merchandising` (the
ranking rules and synonyms that act on it), `relevance` (the relevance model fitted from the
catalog, or why not) and `experiments` (online experiments and their verdicts), all but the rules on
`readonly` pages. Importing them registers them."""

from . import experiments, insights, merchandising, readonly, relevance

__all__ = ["experiments", "insights", "merchandising", "readonly", "relevance"]
