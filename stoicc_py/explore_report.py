"""What `stoicc explore` shows: per-format summaries over the matrices, the terminal table,
the JSON and the Pareto plot (error against CPU time and against accelerator energy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stoicc_py import cmdline
from stoicc_py.dialects.layout import BUFFER_KINDS
from stoicc_py.explore import ExploreError, Result
from stoicc_py.explore_model import Cost, Evaluation, ModelCandidate

MIB = 1 << 20


@dataclass
class Summary:
    """One format over every matrix: bytes, CPU time, cycles and energy summed, errors averaged,
    over the matrices it ran on; `error` names the refusals."""

    format: str
    label: str
    measured: int
    bytes: dict[str, int] | None
    weight_error: float | None
    output_error: float | None
    cpu_ms: float | None
    accel_cycles: int | None
    accel_energy_uj: float | None
    error: str | None
    accel_error: str | None


def _refusal(messages: list[str | None], total: int) -> str | None:
    said = [m for m in messages if m]
    if not said:
        return None
    return said[0] if len(said) == total else f"{len(said)} of {total} matrices: {said[0]}"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _sum(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def summarize(results: list[Result]) -> list[Summary]:
    by_format: dict[str, list[Result]] = {}
    for r in results:
        by_format.setdefault(r.format, []).append(r)
    summaries = []
    for key, rows in by_format.items():
        ran = [r for r in rows if r.bytes is not None]
        summaries.append(Summary(
            key, rows[0].label, len(ran),
            {kind: sum(r.bytes[kind] for r in ran if r.bytes) for kind in (*BUFFER_KINDS, "total")} if ran else None,
            _mean([r.weight_error for r in ran]), _mean([r.output_error for r in ran]),
            _sum([r.cpu_ms for r in ran]), _sum([r.accel_cycles for r in ran]), _sum([r.accel_energy_uj for r in ran]),
            _refusal([r.error for r in rows], len(rows)), _refusal([r.accel_error for r in ran], len(ran)),
        ))  # fmt: skip
    return summaries


HEADER = ("format", "MiB", "values", "meta+table", "scales", "w err", "out err", "CPU ms", "cycles", "energy uJ")


def _cells(s: Summary | Result) -> list[str]:
    if not s.bytes:
        return [s.label] + [""] * (len(HEADER) - 1)
    b = s.bytes
    return [
        s.label,
        f"{b['total'] / MIB:.3f}",
        f"{b['values'] / MIB:.3f}",
        f"{(b['metadata'] + b['table']) / MIB:.3f}",
        f"{b['scales'] / MIB:.3f}",
        _num(s.weight_error),
        _num(s.output_error),
        _num(s.cpu_ms),
        "" if s.accel_cycles is None else f"{s.accel_cycles:,}",
        _num(s.accel_energy_uj),
    ]


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.3g}"


def _notes(s: Summary | Result, footnotes: dict[str, int]) -> str:
    """Each refusal as a footnote number, the same message under one number."""
    said = [f"not run: {s.error}" if s.error else "", f"accel: {s.accel_error}" if s.accel_error else ""]
    return " ".join(f"[{footnotes.setdefault(n, len(footnotes) + 1)}]" for n in said if n)


def table(rows: list[Summary] | list[Result]) -> str:
    """Aligned columns; the refusals (the compiler's or packer's messages) as footnotes."""
    footnotes: dict[str, int] = {}
    body = [_cells(r) + [_notes(r, footnotes)] for r in rows]
    return _aligned([*HEADER, "notes"], body) + "".join(f"\n[{i}] {m}" for m, i in footnotes.items())


def write_json(path: str, meta: dict[str, Any], results: list[Result], complete: bool) -> None:
    """The run's settings, the summaries and every result so far (`complete`: false while the
    run goes on, and in the file an interrupted run leaves)."""
    summary = [asdict(s) for s in summarize(results)]
    cmdline.write_json(path, meta | {"complete": complete, "summary": summary, "results": [asdict(r) for r in results]})


def check_plotting() -> None:
    """ExploreError now, before the run, if --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ExploreError("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[bench]')") from None


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (smaller is better), by x."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot(path: str, summaries: list[Summary], title: str) -> None:
    """Output error against total CPU time and against accelerator energy, Pareto fronts joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, attr, xlabel in ((axes[0], "cpu_ms", "CPU time, ms (sum over matrices)"),
                             (axes[1], "accel_energy_uj", "accelerator energy, uJ (sum over matrices)")):  # fmt: skip
        shown = [s for s in summaries if getattr(s, attr) is not None and s.output_error is not None]
        points = [(float(getattr(s, attr)), max(float(s.output_error or 0), 1e-9)) for s in shown]
        ax.scatter([p[0] for p in points], [p[1] for p in points])
        for s, (x, y) in zip(shown, points):
            ax.annotate(s.format, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
        front = [points[i] for i in pareto(points)]
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
        ax.set(xlabel=xlabel, ylabel="relative output error (mean)", xscale="log", yscale="log")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- a whole model (explore_model)

MODEL_HEADER = ("format", "method", "MiB", "ppl", "x fp32", "sum layer dppl", "worst layer", "CPU ms", "cycles",
                "energy uJ", "method s")  # fmt: skip


def model_rows(evaluations: list[Evaluation], costs: dict[str, Cost],
               chosen: dict[str, ModelCandidate]) -> list[dict[str, Any]]:  # fmt: skip
    """Per evaluation (the baseline first), what the table and the JSON show."""
    base = evaluations[0]
    rows = []
    for e in evaluations:
        c = chosen.get(e.key)
        deltas = [p - b for p, b in zip(e.layer_ppl, base.layer_ppl)] if e is not base else []
        worst = max(range(len(deltas)), key=deltas.__getitem__) if deltas else None
        rows.append({
            "format": e.key, "layout": c.layout if c else "dense f32", "method": c.method if c else "",
            "options": c.options if c else {}, "bytes": sum(e.layer_bytes) if e.layer_bytes else None,
            "ppl": e.ppl, "ppl_ratio": None if e.ppl is None or base.ppl is None else e.ppl / base.ppl,
            "layer_ppl_delta_sum": sum(deltas) if deltas else None,
            "worst_layer": worst, "worst_layer_delta": None if worst is None else deltas[worst],
            "method_s": e.seconds, "error": e.error, **asdict(costs[e.key]),
        })  # fmt: skip
    return rows


def model_table(rows: list[dict[str, Any]]) -> str:
    """Aligned columns of model_rows; the refusals as footnotes."""
    footnotes: dict[str, int] = {}
    body = []
    for r in rows:
        said = [f"not run: {r['error']}" if r["error"] else "", f"CPU: {r['cpu_error']}" if r["cpu_error"] else "",
                f"accel: {r['accel_error']}" if r["accel_error"] else ""]  # fmt: skip
        notes = " ".join(f"[{footnotes.setdefault(n, len(footnotes) + 1)}]" for n in said if n)
        worst = "" if r["worst_layer"] is None else f"{r['worst_layer_delta']:+.3g} (layer {r['worst_layer']})"
        body.append([
            f"{r['format']}: {r['layout']}", r["method"] + "".join(f" {k}={v}" for k, v in r["options"].items()),
            "" if r["bytes"] is None else f"{r['bytes'] / MIB:.2f}", _num(r["ppl"]),
            "" if r["ppl_ratio"] is None else f"{r['ppl_ratio']:.3f}", _signed(r["layer_ppl_delta_sum"]), worst,
            _num(r["cpu_ms"]), "" if r["accel_cycles"] is None else f"{r['accel_cycles']:,}",
            _num(r["accel_energy_uj"]), f"{r['method_s']:.0f}" if r["method_s"] else "", notes,
        ])  # fmt: skip
    return _aligned([*MODEL_HEADER, "notes"], body) + "".join(f"\n[{i}] {m}" for m, i in footnotes.items())


def layer_table(evaluations: list[Evaluation]) -> str:
    """Per layer, each candidate's perplexity increase with only that layer compressed."""
    base = evaluations[0]
    done = [e for e in evaluations[1:] if e.error is None]
    body = [[str(i), f"{base.layer_ppl[i]:.4g}", *(_signed(e.layer_ppl[i] - base.layer_ppl[i]) for e in done), ""]
            for i in range(len(base.layer_ppl))]  # fmt: skip
    return _aligned(["layer", "fp32 ppl", *(e.key for e in done), ""], body)


def _signed(v: float | None) -> str:
    return "" if v is None else f"{v:+.3g}"


def _aligned(head: list[str], body: list[list[str]]) -> str:
    """The first column left-aligned, the others right-aligned, the last (notes) as it is."""
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for line in [head, *body]:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:-1], widths[1:])]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(lines)
