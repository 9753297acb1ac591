"""The readable report (tables on stdout), the JSON file and the optional plot."""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import Any

from .kernels import FORMATS

Row = dict[str, Any]
# ggml MUL_MAT types compared with our formats of the same weight precision.
GGML_MATCH = {"f32": ("dense",), "q8_0": ("int8", "w8a8"), "q4_0": ("int4", "nm24-int4"), "tq2_0": ("ternary",)}


Column = tuple[str, int, Callable[[Row], str]]


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _render(columns: list[Column], rows: list[Row]) -> list[str]:
    """A header line and one line per row: the first column left-aligned, the others right."""

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, (_, w, _)) in enumerate(zip(cells, columns)))

    return [line([title for title, _, _ in columns]).rstrip()] + [
        line([fn(r) for _, _, fn in columns]).rstrip() for r in rows
    ]


def _stat(key: str, stat: str) -> Callable[[Row], str]:
    return lambda r: _cell(_ms(r[key][stat]) if r.get(key) else None, ".3f")


def _ratio(name: str) -> Callable[[Row], str]:
    return lambda r: _cell((r.get("ratios") or {}).get(name), ".2f")


def _torch_match(r: Row) -> str:
    return _ratio(FORMATS[r["format"]].torch_match)(r) if r["format"] else "-"


HEAD: list[Column] = [
    ("benchmark", 26, lambda r: r["label"] if r["kind"] == "baseline" else f"ours {r['label']}"),
    ("thr", 3, lambda r: _cell(r["threads_used"], "d")),
    ("check", 9, lambda r: r["status"].upper() if r["status"] in ("fail", "error") else r["status"]),
]
TAIL: list[Column] = [
    ("ideal", 5, lambda r: _cell(r["ideal_work_ratio"], ".2f")),
    ("RSS MB", 7, lambda r: _cell(r.get("peak_rss_mb"), ".0f")),
]
TIMING: list[Column] = [
    ("med ms", 9, _stat("warm", "median_s")),
    ("min ms", 9, _stat("warm", "min_s")),
    ("runs", 4, lambda r: _cell(r["warm"]["runs"] if r.get("warm") else None, "d")),
    ("GFLOP/s", 8, lambda r: _cell(r.get("gflops"), ".2f") + ("*" if r["dense_equivalent"] else "")),
    ("GB/s", 6, lambda r: _cell(r.get("gbps"), ".1f")),
    ("cold ms", 9, _stat("cold", "median_s")),
    ("cold GB/s", 9, lambda r: _cell(r.get("cold_gbps"), ".1f")),
    ("x numpy", 7, _ratio("numpy f32")),
    ("x torch", 7, _ratio("torch f32")),
    ("x torch-q", 9, _torch_match),
    ("x dense", 7, _ratio("ours dense")),
]
CHECK_ONLY: list[Column] = [("rel error", 9, lambda r: _cell(r.get("max_rel_error"), ".1e"))]
LEGEND = """\
med/min ms: median and minimum time per call (warm cache); cold: every call after evicting the caches (GEMV only).
GFLOP/s: 2*M*N*K / median; * = dense-equivalent (the zeros of a sparse weight counted as work).
GB/s: weight bytes (values + metadata + scales + tables) / median time.
x numpy, x torch, x torch-q (the torch kernel of the format's precision), x dense (our dense f32 kernel):
  that baseline's median time over ours; above 1, ours is faster. ideal: the format's dense-over-sparse work ratio.
thr: threads (ours: the count given to the kernel's `threads` option, 1 where the runtime has none).
RSS MB: the process's peak RSS during the benchmark."""
CHECK_LEGEND = """\
rel error: max |result - reference| / max |reference| (integers must be exact); ideal: dense-over-sparse work ratio.
thr: threads (ours: the count given to the kernel's `threads` option, 1 where the runtime has none)."""


def results_table(rows: list[Row], timing: bool) -> str:
    columns = HEAD + (TIMING if timing else CHECK_ONLY) + TAIL
    out = []
    for (m, n, k, threads), group in groupby(rows, lambda r: (r["m"], r["n"], r["k"], r["threads"])):
        out += ["", f"## {m} x {n} x {k} ({'GEMV' if m == 1 else 'GEMM'}, M x N x K), threads {threads}"]
        out += _render(columns, list(group))
    return "\n".join(out)


WEIGHTS: list[Column] = [
    ("format", 10, lambda r: r["format"]),
    ("N x K", 12, lambda r: f"{r['n']} x {r['k']}"),
    ("compile s", 9, lambda r: _cell(r.get("compile_s"), ".2f")),
    ("pack s", 7, lambda r: _cell(r.get("pack_s"), ".2f")),
    ("validate ms", 11, lambda r: _cell(_ms(r.get("validate_s")), ".2f")),
    ("MB", 7, lambda r: _cell(r["bytes"]["total"] / 1e6 if r.get("bytes") else None, ".1f")),
    ("error", 5, lambda r: r["error"] or ""),
]
COMPILE: list[Column] = [
    ("file", 16, lambda r: r["file"]),
    ("kernels", 7, lambda r: str(len(r.get("kernels", [])))),
    ("import s", 8, lambda r: _cell(r.get("subprocess_import_s"), ".2f")),
    ("subproc cold s", 14, lambda r: _cell(r.get("subprocess_cold_s"), ".2f")),
    ("subproc cached s", 16, lambda r: _cell(r.get("subprocess_cached_s"), ".2f")),
    ("in-proc cold s", 14, lambda r: _cell(r.get("in_process_cold_s"), ".2f")),
    ("in-proc cached s", 16, lambda r: _cell(r.get("in_process_cached_s"), ".3f")),
    ("error", 5, lambda r: r.get("error") or ""),
]
CALLS: list[Column] = [
    ("call", 14, lambda r: r["name"]),
    ("us", 7, lambda r: _cell(r.get("median_us"), ".2f")),
    ("native us", 9, lambda r: _cell(r.get("native_us"), ".2f")),
    ("checked us", 10, lambda r: _cell(r.get("checked_us"), ".2f")),
    ("rel error", 9, lambda r: _cell(r.get("max_rel_error"), ".1e")),
]
GGML: list[Column] = [
    ("type", 8, lambda r: r["type_a"]),
    ("M x N x K", 20, lambda r: f"{r['m']} x {r['n']} x {r['k']}"),
    ("us/run", 10, lambda r: f"{r['us_per_run']:.2f}"),
    ("GFLOP/s", 8, lambda r: f"{2 * r['m'] * r['n'] * r['k'] / r['us_per_run'] / 1e3:.2f}"),
]


def weights_table(records: list[Row]) -> str:
    title = "## Weights (per N x K): compile (from the cache when warm), pack, one validate(), bytes"
    return "\n".join(["", title, *_render(WEIGHTS, records)])


def compile_table(records: list[Row]) -> str:
    title = "## Compile time of examples/*.tdsl (whole files; subprocess = new interpreter, imports included)"
    return "\n".join(["", title, *_render(COMPILE, records)])


def calls_table(records: list[Row]) -> str:
    title = (f"## Call overhead, M x N x K = {records[0]['m']} x {records[0]['n']} x {records[0]['k']}, median us per call "
             "(native: the ctypes call alone; checked: a call with new shapes)")  # fmt: skip
    return "\n".join(["", title, *_render(CALLS, records)])


def ggml_table(ggml: Row) -> str:
    title = f"## llama.cpp test-backend-ops MUL_MAT ({ggml['binary']}; its own thread count)"
    body = [f"ERROR {ggml['error']}"] if ggml["error"] else _render(GGML, ggml["rows"])
    return "\n".join(["", title, *body])


def add_ggml_ratios(rows: list[Row], ggml_rows: list[Row]) -> None:
    """Our rows of a shape and precision that ggml measured get ratios["ggml TYPE"]."""
    for g in ggml_rows:
        for r in rows:
            if r["kind"] == "ours" and r.get("warm") and r["format"] in GGML_MATCH.get(g["type_a"], ()):
                if (r["m"], r["n"], r["k"]) == (g["m"], g["n"], g["k"]) and g["type_b"] == "f32":
                    r["ratios"][f"ggml {g['type_a']}"] = g["us_per_run"] * 1e-6 / r["warm"]["median_s"]


def write_plot(path: str, rows: list[Row]) -> str:
    """GFLOP/s of every benchmark per shape, one panel per thread count; returns a message."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"--plot {path}: matplotlib is not installed (pip install matplotlib); no plot written"
    threads = sorted({r["threads"] for r in rows})
    shapes = len({(r["m"], r["n"], r["k"]) for r in rows})
    fig, axes = plt.subplots(len(threads), 1, figsize=(6 + 1.4 * shapes, 5 * len(threads)), squeeze=False)
    for ax, t in zip(axes[:, 0], threads):
        _plot_panel(ax, [r for r in rows if r["threads"] == t and r.get("gflops")], t)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"wrote {path}"


def _plot_panel(ax: Any, rows: list[Row], threads: int) -> None:
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(f"{r['m']}x{r['n']}x{r['k']}" for r in rows))
    names = list(dict.fromkeys(r["name"] for r in rows))
    width = 0.8 / max(len(names), 1)
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(names):
        values = {f"{r['m']}x{r['n']}x{r['k']}": r["gflops"] for r in rows if r["name"] == name}
        hatch = "" if name.startswith("ours") else "//"
        ax.bar(
            [s + i * width for s in range(len(shapes))],
            [values.get(s, 0) for s in shapes],
            width,
            label=name,
            color=colors[i % len(colors)],
            hatch=hatch,
        )
    ax.set_xticks([s + 0.4 - width / 2 for s in range(len(shapes))], shapes, fontsize=8, rotation=25, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("GFLOP/s (sparse: dense-equivalent)")
    ax.set_title(f"threads {threads} (M x N x K; hatched: baselines)")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
