"""The paper's published tables beside ours: comparison tables, and their Markdown, LaTeX and CSV forms.

`paper` reads the packaged tables and names the paper's datasets, `compare` builds our results beside them, and
`render` writes any table as CSV, Markdown and LaTeX.
"""

from .compare import (
    BACKBONE_QUANTITIES,
    COMPUTE_QUANTITIES,
    METRICS,
    TOY_NOTE,
    compare_backbones,
    compare_box_noise,
    compare_compute,
    compare_hq_datasets,
    compare_points,
    model_gains,
)
from .paper import DATASET_ALIASES, FIGURE5_DATASETS, PAPER_DATASETS, paper_table, paper_table_names
from .render import flatten, to_latex, to_markdown, write_table

__all__ = [
    "BACKBONE_QUANTITIES", "COMPUTE_QUANTITIES", "DATASET_ALIASES", "FIGURE5_DATASETS", "METRICS", "PAPER_DATASETS",
    "TOY_NOTE", "compare_backbones", "compare_box_noise", "compare_compute", "compare_hq_datasets", "compare_points",
    "flatten", "model_gains", "paper_table", "paper_table_names", "to_latex", "to_markdown", "write_table",
]
