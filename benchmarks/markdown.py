"""Markdown tables for the benchmark reports: one way to write a row, for every report."""

from __future__ import annotations


def row(*cells) -> str:
    """'| a | b |'; an empty cell is written '| |'."""
    return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in map(str, cells)) + "|"


def table(header, rows) -> list[str]:
    """The header, its rule and one line per row of cells."""
    return [row(*header), "|" + "---|" * len(header), *(row(*cells) for cells in rows)]
