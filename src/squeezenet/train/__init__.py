"""Training with Lightning: recipes, data, exact resume, DDP via torchrun. Builds on weights and data."""

from .recipe import Recipe, apply_overrides, list_recipes, load_recipe
from .run import TrainResult, load_run, train

__all__ = ["Recipe", "apply_overrides", "list_recipes", "load_recipe", "load_run", "train", "TrainResult"]
