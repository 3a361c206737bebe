"""The paper's published tables as they ship with the package, and how the paper names its datasets.

The tables are `hqsam/paper_tables/*.csv`, units as printed in the paper.
"""

from importlib import resources
from io import StringIO
from typing import Dict, List

import pandas as pd

from ..data.layout import LAYOUTS

PAPER_TABLES = resources.files("hqsam") / "paper_tables"

# The paper's four HQ datasets: display name and the prefix of their columns in the paper's CSVs.
PAPER_DATASETS = (("DIS5K-VD", "dis"), ("COIFT", "coift"), ("HRSOD", "hrsod"), ("ThinObject5K-TE", "thin"))
# Figure 5 names DIS5K-VD "DIS-VD".
FIGURE5_DATASETS = {"COIFT": "COIFT", "DIS5K-VD": "DIS-VD"}
# Every layout's evaluation sets (by their `paper_name`) and Figure 5's names -> the paper's dataset name.
DATASET_ALIASES: Dict[str, str] = {
    **{spec.name: spec.paper_name for layout in LAYOUTS.values() for spec in layout if spec.paper_name is not None},
    **{figure5: paper for paper, figure5 in FIGURE5_DATASETS.items()},
}


def paper_table_names() -> List[str]:
    """The packaged paper tables, e.g. "table2_hq_token_ablation", sorted."""
    return sorted(entry.name[: -len(".csv")] for entry in PAPER_TABLES.iterdir() if entry.name.endswith(".csv"))


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables as published (a plain RangeIndex; columns as in the CSV).

    Arguments:
      name (str): the CSV's stem ("table13_box_noise"), its short name ("table13", "fig5"), or the file name.
    """
    names = paper_table_names()
    stem = name[: -len(".csv")] if name.endswith(".csv") else name
    if stem not in names:
        matches = [candidate for candidate in names if candidate.split("_")[0] == stem]
        if len(matches) != 1:
            raise ValueError(f"no paper table {name!r}: the available ones are {', '.join(names)}")
        stem = matches[0]
    return pd.read_csv(StringIO((PAPER_TABLES / f"{stem}.csv").read_text()))
