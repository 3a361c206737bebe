"""An append-only CSV log that survives resumption: rows past the resumed state are dropped on open."""

import csv
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

from ..io import atomic_write


class CsvLog:
    def __init__(self, path: Path, truncate_after: Optional[Tuple[str, int]] = None) -> None:
        """Open `path` for appending; with `truncate_after=(column, value)` keep only rows with column <= value
        (a resumed run repeats the steps after its checkpoint, so their old rows go)."""
        self.path = Path(path)
        self.columns: List[str] = []
        if self.path.exists() and self.path.stat().st_size:
            frame = pd.read_csv(self.path)
            if truncate_after is not None:
                column, value = truncate_after
                frame = frame[frame[column] <= value]
            self._rewrite(frame)

    def append(self, row: Dict[str, object]) -> None:
        if not self.columns:
            self._rewrite(pd.DataFrame([row]))
            return
        if set(row) - set(self.columns):
            self._rewrite(pd.concat([pd.read_csv(self.path), pd.DataFrame([row])], ignore_index=True))
            return
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, fieldnames=self.columns).writerow(row)

    def _rewrite(self, frame: pd.DataFrame) -> None:
        with atomic_write(self.path, "w") as file:
            frame.to_csv(file, index=False)
        self.columns = list(frame.columns)
