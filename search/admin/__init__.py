"""The serving app's admin pages: `insights` (what shoppers search for), `merchandising` (the
ranking rules and synonyms that act on it) and `relevance` (the relevance model fitted from the
catalog, or why not). Importing them registers them."""

from . import insights, merchandising, relevance

__all__ = ["insights", "merchandising", "relevance"]
