"""Training HQ-SAM's added parts with SAM frozen: `fit(load_config("toy" | "paper" | path, overrides))`."""

from .config import TrainConfig, load_config
from .loop import FitResult, fit

__all__ = ["FitResult", "TrainConfig", "fit", "load_config"]
