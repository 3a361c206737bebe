"""The paper's published tables beside ours: comparison tables, and their Markdown, LaTeX and CSV forms.

`paper` reads the packaged tables and names the paper's datasets, `compare` builds our results beside them, and
`render` writes any table as CSV, Markdown and LaTeX; `uncertainty` gives our HQ-SAM vs SAM gains paired bootstrap
intervals and win counts over images.
"""

from .compare import (
    ABLATION_QUANTITIES,
    BACKBONE_QUANTITIES,
    COMPUTE_QUANTITIES,
    METRICS,
    TOY_NOTE,
    compare_ablations,
    compare_backbones,
    compare_box_noise,
    compare_compute,
    compare_hq_datasets,
    compare_points,
    model_gains,
)
from .paper import DATASET_ALIASES, FIGURE5_DATASETS, PAPER_DATASETS, paper_table, paper_table_names
from .render import flatten, to_latex, to_markdown, write_table
from .uncertainty import gain_columns, paired_bootstrap, paired_images

__all__ = [
    "ABLATION_QUANTITIES", "BACKBONE_QUANTITIES", "COMPUTE_QUANTITIES", "DATASET_ALIASES", "FIGURE5_DATASETS", "METRICS", "PAPER_DATASETS",
    "TOY_NOTE", "compare_ablations", "compare_backbones", "compare_box_noise", "compare_compute", "compare_hq_datasets", "compare_points",
    "flatten", "gain_columns", "model_gains", "paired_bootstrap", "paired_images", "paper_table", "paper_table_names",
    "to_latex", "to_markdown", "write_table",
]
