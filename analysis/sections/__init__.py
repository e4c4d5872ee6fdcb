"""Each study's own section of its report: one module per study, one renderer for all.

A study's section is a function of its results (the table, the results directory for prediction
or feature files, where to draw figures) that returns a `Section`: the numbers as DataFrames
(`tables`, saved as CSV beside the report and checked by the tests), the Markdown blocks in reading
order (text, or a `Table` of display cells), and the figures it drew. `render` turns a Section into
Markdown; nothing else in a section writes Markdown tables.

    from analysis.sections import temperature
    section = temperature.section(table, results_dir, out_dir)
    text = render(section)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Table:
    """A Markdown table: its columns are the headers, its cells the display text (strings)."""
    frame: pd.DataFrame


@dataclass
class Section:
    name: str                                   # the file stem: <out_dir>/<name>.md
    blocks: list = field(default_factory=list)  # str (Markdown lines) or Table, in reading order
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the numbers behind the text
    figures: list[Path] = field(default_factory=list)

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self


def table_lines(table: Table) -> list[str]:
    """`| a | b |`, `| --- | --- |`, then one line per row; `|` in a cell is escaped."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    frame = table.frame
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join(" --- " for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return lines


def render(section: Section) -> str:
    """The section as Markdown: its blocks one line after another, ending in a newline."""
    lines: list[str] = []
    for block in section.blocks:
        lines.extend(table_lines(block) if isinstance(block, Table) else [block])
    return "\n".join(lines) + "\n"
