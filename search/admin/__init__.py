"""The serving app's admin pages: `insights` (what shoppers search for) and `merchandising` (the
ranking rules and synonyms that act on it). Importing them registers them."""

from . import insights, merchandising

__all__ = ["insights", "merchandising"]
