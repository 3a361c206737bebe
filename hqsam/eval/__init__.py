from .hq_benchmark import evaluate_hq_datasets, summarize

__all__ = ["evaluate_hq_datasets", "summarize"]
