"""Number formatting for the report: one place so every table reads the same. Functions return plain text (the
templates escape it); "—" stands for "not measured"."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from optim.report.summary import measured

DASH = "—"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def ms(value: Any) -> str:
    """Milliseconds with 3 significant digits below 100 ms."""
    value = measured(value)
    if value is None:
        return DASH
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def ap(value: Any) -> str:
    """A COCO AP figure (0..1) as points (0..100), the way COCO papers print it."""
    value = measured(value)
    return DASH if value is None else f"{value * 100:.1f}"


def percent(value: Any) -> str:
    """A 0..1 ratio as a percentage."""
    value = measured(value)
    return DASH if value is None else f"{value * 100:.1f}%"


def signed_points(value: float | None) -> str:
    """A signed delta in points with a real minus sign."""
    if value is None:
        return DASH
    text = f"{abs(value):.1f}"
    if text == "0.0":
        return "±0.0"
    return ("+" if value > 0 else "−") + text


def delta_class(value: float | None) -> str:
    """CSS class grading an mAP delta: gain, flat, small loss, large loss."""
    if value is None:
        return ""
    if value >= 0.05:
        return "gain"
    if value > -0.05:
        return "flat"
    return "loss" if value > -1.0 else "loss-big"


def bracket(pair: tuple[float, float] | None, digits: int = 1, signed: bool = False) -> str:
    """An interval as "[56.9, 58.5]" (signed: "[−1.1, +0.3]"); empty when there is none."""
    if pair is None:
        return ""
    if signed:
        show = lambda v: ("+" if v > 0 else "−" if v < 0 else "±") + f"{abs(v):.{digits}f}"
    else:
        show = lambda v: f"{v:.{digits}f}"
    return f"[{show(pair[0])}, {show(pair[1])}]"


def times(value: float | None) -> str:
    """A speed ratio like 2.31×."""
    return DASH if value is None else f"{value:.2f}×"


def megabytes(value: Any) -> str:
    """Bytes as MB (10^6)."""
    value = measured(value)
    return DASH if value is None else f"{value / 1e6:,.1f}"


def count(value: Any) -> str:
    """A large count with an SI suffix (2.40 M, 1.20 G)."""
    value = measured(value)
    if value is None:
        return DASH
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.2f} {suffix}"
    return f"{value:.0f}"


def seconds(value: Any) -> str:
    """Seconds, one decimal."""
    value = measured(value)
    return DASH if value is None else f"{value:,.1f} s"


def json_text(value: Any) -> str:
    """Indented JSON, for a <pre> (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=False, default=str)


def script_json(value: Any) -> str:
    """JSON safe to embed inside <script type="application/json">: no '<', '>' or '&' can end the element."""
    text = json.dumps(value, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def local_href(path: Any, out_dir: Path | None) -> str | None:
    """A relative link to a local file, or None when `path` is a URL or not a path at all.

    Absolute paths are made relative to the report folder so the report folder can be moved as a whole.
    """
    if not isinstance(path, str) or not path or path.startswith("//") or _SCHEME.match(path):
        return None
    if Path(path).is_absolute() and out_dir is not None:
        try:
            path = Path(path).resolve().relative_to(Path(out_dir).resolve()).as_posix()
        except ValueError:
            return None  # outside the report folder: a link would break when the folder moves
    return quote(path.replace("\\", "/"), safe="/._-~")
