"""The report's Serving section: each served variant's throughput against p99 latency per batching setting and
load level, the in-process figure beside it, the served mAP against the in-process mAP, and Triton's
queue/compute split. Rendered only when the spec had a `serving:` section."""

from __future__ import annotations

from markupsafe import escape

from optim.report.fmt import DASH


def e(value) -> str:
    """Any value as escaped HTML text (None -> empty)."""
    return "" if value is None else str(escape(str(value)))


SERVING_TEXT = ("Each variant's measured artifact was deployed as a Triton model repository (python -m optim.deploy) "
                "and served by PyTriton on 127.0.0.1; clients ran in the runner's process on the same machine. "
                "Closed loop: N clients back to back; open loop: Poisson arrivals, latency from the scheduled "
                "arrival. Queue and compute are Triton's per-request means from /metrics; batch = mean batch formed. "
                "Served mAP: the evaluation split's image files sent to <variant>_detect, scored with the runner's "
                "evaluator.")


def _num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _in_process(variants: dict, name: str) -> str:
    record = variants.get(name) or {}
    single = (record.get("latency") or {}).get("1")
    return f"p50 {_num(single['p50_ms'])} ms at batch 1" if single else DASH


def _accuracy(record: dict) -> str:
    acc = record.get("accuracy")
    if not acc:
        return DASH
    verdict = "equal" if acc["equal_to_4_decimals"] else "<strong>MISMATCH</strong>"
    return f"{acc['served_map']:.4f} vs {acc['in_process_map']:.4f}: {verdict}"


def _rows(record: dict, variants: dict) -> str:
    head = (f"<td>{e(record['variant'])}</td><td>{'on' if record['batching'] else 'off'}</td>")
    if record.get("status") != "ok":
        return f'<tr class="failed">{head}<td colspan="9" class="error-cell"><b>failed</b>{e(record.get("error"))}</td></tr>'
    rows = []
    for level in record["levels"]:
        where = f"concurrency {level['concurrency']}" if level["mode"] == "closed" else f"{level['rate']:g} req/s"
        server = level.get("server") or {}
        rows.append(f"<tr>{head}<td>{e(where)}</td><td>{_num(level['throughput_ips'], 1)}</td>"
                    f"<td>{_num(level.get('p50_ms'))}</td><td>{_num(level.get('p99_ms'))}</td><td>{level['errors']}</td>"
                    f"<td>{_num(server.get('queue_ms'))} / {_num(server.get('compute_infer_ms'))}</td>"
                    f"<td>{_num(server.get('mean_batch'))}</td><td>{e(_in_process(variants, record['variant']))}</td>"
                    f"<td>{_accuracy(record)}</td></tr>")
    return "".join(rows)


def serving_section(results: dict) -> str:
    records = results.get("serving")
    if not records:
        return ""
    variants = {v["name"]: v for v in results.get("variants", [])}
    body = "".join(_rows(record, variants) for record in records)
    return f"""
<section class="card" id="serving">
  <h2>Serving</h2>
  <table class="data">
    <thead><tr><th>variant</th><th>batching</th><th>load</th><th>throughput (img/s)</th><th>p50 (ms)</th>
    <th>p99 (ms)</th><th>errors</th><th>queue / compute (ms)</th><th>batch</th><th>in-process</th>
    <th>served mAP vs in-process</th></tr></thead>
    <tbody>{body}</tbody>
  </table>
  <p class="muted small">{e(SERVING_TEXT)}</p>
</section>"""
