"""Selection: plans (which samples each epoch trains on) and the selectors that make them."""

from curation.selection.plans import FullPlan, Plan, StaticPlan, TablePlan

__all__ = ["FullPlan", "Plan", "StaticPlan", "TablePlan"]
