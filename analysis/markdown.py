"""Small formatting helpers for the Markdown report: numbers that never print `nan`, and tables."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import pandas as pd

MISSING = "n/a"


def number(value, digits: int = 3) -> str:
    """Significant digits, `n/a` for a missing value, `inf` spelled out."""
    if value is None:
        return MISSING
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def fixed(value, decimals: int = 3, sign: bool = False) -> str:
    """Fixed decimals (for accuracies and increments, so columns line up)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def mean_pm(mean, spread, decimals: int = 3, sign: bool = False) -> str:
    text = fixed(mean, decimals, sign)
    if text == MISSING or spread is None or (isinstance(spread, float) and math.isnan(spread)):
        return text
    return f"{text} ± {spread:.{decimals}f}"


def table(rows: Iterable[dict] | pd.DataFrame, columns: list[tuple[str, str | Callable[[dict], str]]]) -> str:
    """A Markdown table; each column is (header, key of the row or a function of the row)."""
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    rows = list(rows)
    if not rows:
        return "_(no rows)_\n"
    lines = ["| " + " | ".join(header for header, _ in columns) + " |",
             "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        cells = []
        for _, how in columns:
            value = how(row) if callable(how) else row.get(how)
            text = value if isinstance(value, str) else number(value)
            cells.append(text.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(title: str, path, out_dir) -> str:
    """An image link relative to the report, so the folder can be moved or logged as is."""
    from pathlib import Path

    relative = Path(path).relative_to(out_dir) if Path(path).is_relative_to(out_dir) else Path(path)
    return f"![{title}]({relative.as_posix()})\n"


def budgets(values: Iterable) -> str:
    """The students' budgets in words: `student budget steps=1500` when one budget trained every row;
    with recipes chosen per cell (fair recipes), the range, e.g. `student budgets steps=1000 to
    steps=4000 (3 distinct: each cell's own, chosen on validation data)`."""
    labels = sorted({str(v) for v in values if v is not None and v == v},
                    key=lambda label: (label.split("=")[0], float(label.split("=")[-1]) if
                                       label.split("=")[-1].replace(".", "", 1).isdigit() else math.inf, label))
    if len(labels) <= 1:
        return f"student budget {labels[0] if labels else MISSING}"
    return f"student budgets {labels[0]} to {labels[-1]} ({len(labels)} distinct: each cell's own, chosen on validation data)"
