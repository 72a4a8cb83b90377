"""Report tables as data: columns and cells that templates/macros.html renders, so that adding a column is one
entry in a list of columns, never a change of markup."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """A table header: its label, an optional second line, and how the browser sorts it ("num" or "text")."""

    label: str
    sub: str = ""
    kind: str = "text"


@dataclass(frozen=True)
class Cell:
    """One table cell: its text (escaped by the template), a small muted note after it, the value the browser
    sorts by, a CSS class, or a precision to show as a badge instead of the text."""

    text: object = ""
    note: str = ""
    sort: str = ""
    css: str = ""
    badge: str | None = None


@dataclass(frozen=True)
class Table:
    """Columns and rows of cells (one list of cells per row, in column order)."""

    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
