"""The report's "Latency cross-check" section: where each variant was timed, its engine's own benchmark
tool on the same artifact beside the lab's figure (disagreements over 15 % flagged), and how much of the
machine's matrix-product peak the variant reaches."""

from __future__ import annotations

from optim.report.fmt import DASH, e, ms, percent
from optim.report.summary import is_ok


def _reference_cells(reference: dict | None) -> str:
    if not reference:
        return f'<td>{DASH}</td><td class="num">{DASH}</td><td class="num">{DASH}</td><td class="num">{DASH}</td>'
    if "error" in reference:
        return f'<td colspan="4" class="bad">reference tool failed: {e(reference["error"])}</td>'
    rounds = reference["rounds"]
    lab = sorted(r["lab_ms"] for r in rounds)[len(rounds) // 2]
    flag = "good" if reference["agrees"] else "bad"
    mark = "" if reference["agrees"] else " ⚠ over 15 % apart"
    title = e(rounds[0]["command"])
    return (f'<td title="{title}">{e(reference["tool"])} <small>({e(reference["statistic"])}, '
            f'{len(rounds)} round{"s" if len(rounds) > 1 else ""})</small></td>'
            f'<td class="num">{ms(lab)}</td><td class="num">{ms(reference["reference_ms"])}</td>'
            f'<td class="num {flag}">{reference["ratio"]:.2f}{mark}</td>')


def _peak_cell(share: dict | None) -> str:
    if not share:
        return f'<td class="num">{DASH}</td>'
    return (f'<td class="num" title="{share["achieved_ops"] / 1e9:.1f} GOP/s of {share["peak_ops"] / 1e9:.0f} '
            f'({e(share["peak_precision"])} peak)">{percent(share["share"])}</td>')


def agreement_section(results: dict) -> str:
    """The section as HTML ('' when no variant has timing information, e.g. older results)."""
    variants = [v for v in results.get("variants", []) if is_ok(v) and v.get("timing")]
    if not variants:
        return ""
    rows = "".join(
        f'<tr><td>{e(v["name"])}</td><td>{e(v["timing"]["timed"])}</td>'
        f'{_reference_cells(v["timing"].get("reference"))}{_peak_cell(v.get("peak_share"))}</tr>'
        for v in variants)
    peaks = results.get("machine_peaks") or {}
    peak_text = ", ".join(f"{name.upper()} {value / 1e9:,.0f} GOP/s" for name, value in peaks.items()) or DASH
    disagreeing = [v["name"] for v in variants if (v["timing"].get("reference") or {}).get("agrees") is False]
    callout = (f'<p class="callout warn"><b>Lab and reference tool disagree by more than 15 %</b> for '
               f'{e(", ".join(disagreeing))}: trust neither figure until the cause is known.</p>'
               if disagreeing else "")
    return f"""
<section class="card" id="cross-check">
  <h2>Latency cross-check</h2>
  <p>Each variant's batch-1 latency measured again by its engine's own benchmark tool on the same artifact and
  settings, alternating with the lab's timing; ratio = lab / tool for the same statistic. Share of peak = achieved
  operations per second at batch 1 against this machine's matrix-product peak for the variant's precision
  (measured in this run: {e(peak_text)}).</p>
  {callout}
  <table class="data"><thead><tr><th>Variant</th><th>Timed in</th><th>Reference tool</th>
  <th class="num">Lab (ms)</th><th class="num">Tool (ms)</th><th class="num">Lab / tool</th>
  <th class="num">Share of peak</th></tr></thead><tbody>{rows}</tbody></table>
</section>"""
