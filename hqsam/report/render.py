"""Tables as CSV, GitHub Markdown and booktabs LaTeX: comparisons with (quantity, kind) columns, or plain tables."""

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from ..io import atomic_write
from ..provenance import write_provenance


def flatten(table: pd.DataFrame) -> pd.DataFrame:
    """The index as leading columns and (quantity, kind) columns as "quantity (kind)": the CSV form."""
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [f"{quantity} ({kind})" for quantity, kind in flat.columns]
    named = any(name is not None for name in flat.index.names)
    return flat.reset_index() if named else flat.reset_index(drop=True)


def to_markdown(table: pd.DataFrame, caption: Optional[str] = None, digits: int = 1) -> str:
    """A GitHub pipe table: index columns first (left-aligned), then "quantity (ours)", "quantity (paper)",
    "quantity (diff)" (or the plain column names), numeric columns right-aligned.

    Numbers get `digits` decimals (differences a sign), NaN shows as "--"; the caption (default
    `table.attrs["caption"]`) is a paragraph above the table.
    """
    header, body = _cells(table, digits)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(escape(" ".join(h for h in cell if h)) for cell in header) + " |"]
    index_count = _index_count(table)
    numeric = [False] * index_count + [_is_numeric(dtype) for dtype in table.dtypes]
    lines.append("| " + " | ".join("---:" if right else "---" for right in numeric) + " |")
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in body]
    caption = caption if caption is not None else table.attrs.get("caption")
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, caption: Optional[str] = None, label: Optional[str] = None, digits: int = 1) -> str:
    """A booktabs table: with (quantity, kind) columns, a quantity spans its ours / paper / diff columns.

    Special characters are escaped, NaN shows as "--", numbers get `digits` decimals; the caption defaults to
    `table.attrs["caption"]`. Needs \\usepackage{booktabs}.
    """
    header, body = _cells(table, digits)
    index_count = _index_count(table)
    lines = [r"\begin{table}[t]", r"\centering"]
    caption = caption if caption is not None else table.attrs.get("caption")
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    align = "l" * index_count + "".join("r" if _is_numeric(dtype) else "l" for dtype in table.dtypes)
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    if isinstance(table.columns, pd.MultiIndex):
        spans, rules, column = [_latex_escape(top) for top, _ in header[:index_count]], [], index_count + 1
        for quantity in dict.fromkeys(q for q, _ in table.columns):
            width = sum(1 for q, _ in table.columns if q == quantity)
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{_latex_escape(str(quantity))}}}")
            rules.append(rf"\cmidrule(lr){{{column}-{column + width - 1}}}")
            column += width
        lines += [" & ".join(spans) + r" \\", " ".join(rules)]
        lines.append(" & ".join([""] * index_count + [_latex_escape(kind) for _, kind in table.columns]) + r" \\")
    else:
        lines.append(" & ".join(_latex_escape(" ".join(h for h in cell if h)) for cell in header) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(_latex_escape(cell) for cell in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(
    table: pd.DataFrame, directory: Union[str, Path], stem: str, caption: Optional[str] = None, digits: int = 1,
    made: Optional[dict] = None,
) -> Dict[str, Path]:
    """Write `stem.csv` (`flatten(table)`, full precision), `stem.md` and `stem.tex` (label "tab:<stem>") into
    `directory`, each atomically, each with the provenance `made` beside it when given (`hqsam.provenance`);
    returns {"csv": path, "md": path, "tex": path}."""
    directory = Path(directory)
    texts = {
        "csv": flatten(table).to_csv(index=False),
        "md": to_markdown(table, caption, digits),
        "tex": to_latex(table, caption, f"tab:{stem}", digits),
    }
    paths = {}
    for suffix, text in texts.items():
        paths[suffix] = directory / f"{stem}.{suffix}"
        with atomic_write(paths[suffix], "w") as file:
            file.write(text)
        if made is not None:
            write_provenance(paths[suffix], made)
    return paths


# --------------------------------------------------------------------------------------------------- helpers


def _index_count(table: pd.DataFrame) -> int:
    return table.index.nlevels if any(name is not None for name in table.index.names) else 0


def _is_numeric(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _cells(table: pd.DataFrame, digits: int) -> Tuple[List[Tuple[str, str]], List[List[str]]]:
    # Header cells as (top, bottom) pairs and body rows as strings: index columns first, numbers formatted.
    index_count = _index_count(table)
    header = [(str(name), "") for name in table.index.names][:index_count]
    if isinstance(table.columns, pd.MultiIndex):
        header += [(str(quantity), f"({kind})") for quantity, kind in table.columns]
        kinds = [kind for _, kind in table.columns]
    else:
        header += [(str(column), "") for column in table.columns]
        kinds = [None] * len(table.columns)
    body = []
    for key, values in zip(table.index, table.itertuples(index=False, name=None)):
        keys = (key if isinstance(key, tuple) else (key,))[:index_count]
        row = [_format(value, digits, signed=False, index=True) for value in keys]
        row += [_format(value, digits, signed=kind == "diff") for value, kind in zip(values, kinds)]
        body.append(row)
    return header, body


def _format(value: object, digits: int, signed: bool, index: bool = False) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "--"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if index or isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(character, character) for character in str(text))
