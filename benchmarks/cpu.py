"""The CPU runner: for every weight shape (N, K), compile and pack each format once, then
for every M and thread count check each kernel against the reference and time it, with
the baselines measured alongside (each result is one row of the JSON's "results")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .baselines import Baseline, as_numpy, baselines
from .kernels import FORMATS, Format, Weight, check, compile_kernel, make_activations, make_weight
from .measure import Flusher, Stats, kernel_threads, library_threads, peak_rss, time_calls

Array = np.ndarray[Any, Any]
Shape = tuple[int, int, int]  # M, N, K
Log = Callable[[str], None]


@dataclass(frozen=True)
class Config:
    shapes: list[Shape]
    formats: list[str]
    threads: list[int]
    repeat: int
    budget: float  # seconds of timed calls per measurement, at most
    timing: bool  # False: correctness only (smoke)
    cold_max_m: int = 1  # cold-cache figures for M up to this (GEMV)


@dataclass
class Prepared:
    """One format's kernel and weight for an (N, K), or why there is none."""

    fmt: Format
    kernel: Any = None
    weight: Weight | None = None
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """One timed call and how to check it."""

    name: str
    kind: str  # "ours" or "baseline"
    call: Callable[[], Any]
    want: Array | None  # None: the call is the reference itself
    rtol: float
    to_numpy: Callable[[Any], Array]
    nbytes: dict[str, int]
    info: dict[str, Any]


def run(config: Config, flusher: Flusher | None, log: Log) -> Iterator[tuple[str, dict[str, Any]]]:
    """("weights", packing record) and ("results", row) of every shape, format and thread count,
    each as soon as it is measured (a group's ratios are added to its rows once it is whole)."""
    by_weight: dict[tuple[int, int], list[int]] = {}
    for m, n, k in config.shapes:
        by_weight.setdefault((n, k), []).append(m)
    for (n, k), ms in by_weight.items():
        rng = np.random.default_rng([n, k])
        prepared = []
        for key in config.formats:
            prepared.append(_prepare(FORMATS[key], n, k, rng, log))
            yield "weights", prepared[-1].record
        base = _baselines(rng.standard_normal((n, k)).astype(np.float32), log)
        for m in ms:
            yield from (("results", row) for row in _run_shape(config, (m, n, k), prepared, base, flusher, log))


def _prepare(fmt: Format, n: int, k: int, rng: np.random.Generator, log: Log) -> Prepared:
    fields = ["compile_s", "pack_s", "pack_peak_rss_mb", "bytes", "validate_s"]
    prepared = Prepared(fmt, record={"format": fmt.key, "n": n, "k": k, **dict.fromkeys(fields)})
    try:
        start = time.perf_counter()
        prepared.kernel = compile_kernel(fmt, n, k)
        prepared.record["compile_s"] = time.perf_counter() - start
        with peak_rss() as memory:
            start = time.perf_counter()
            prepared.weight = make_weight(fmt, prepared.kernel, n, k, rng)
            prepared.record["pack_s"] = time.perf_counter() - start
        prepared.record |= {
            "pack_peak_rss_mb": memory[0].peak_mb,
            "bytes": prepared.weight.bytes,
            "validate_s": _validate_time(prepared.weight),
        }
    except Exception as err:  # a format that does not compile or pack is a recorded failure
        prepared.error = f"{type(err).__name__}: {err}"
        log(f"FAILED to prepare {fmt.key} for N={n} K={k}: {prepared.error}")
    prepared.record["error"] = prepared.error
    return prepared


def _validate_time(weight: Weight) -> float | None:
    """What a full validation of the packed weight costs (paid by a kernel call that cannot skip it)."""
    validate = getattr(weight.arg, "validate", None)
    return time_calls(validate, 3, 1.0, None).min_s if validate else None


def _baselines(w: Array, log: Log) -> list[Baseline]:
    try:
        return baselines(w)
    except Exception as err:  # e.g. a torch op refusing the shape: the run goes on without them
        log(f"FAILED to prepare the baselines for {w.shape}: {type(err).__name__}: {err}")
        return []


def _run_shape(
    config: Config, shape: Shape, prepared: list[Prepared], base: list[Baseline], flusher: Flusher | None, log: Log
) -> Iterator[dict[str, Any]]:
    m, n, k = shape
    rng = np.random.default_rng([m, n, k])
    x = rng.standard_normal((m, k)).astype(np.float32)
    cases = [_baseline_case(b, x) for b in base] + [_our_case(p, m, k, rng) for p in prepared]
    for threads in config.threads:
        log(f"{m} x {n} x {k}, threads {threads}")
        with library_threads(threads) as blas_threads:
            group = []
            for case in cases:
                used = kernel_threads(case.info["kernel"], threads) if case.kind == "ours" else blas_threads
                group.append(_measure(config, case, shape, threads, used, flusher, log))
                yield group[-1]
            add_ratios(group)


def _baseline_case(b: Baseline, x: Array) -> Case:
    want = None if b.name == "numpy f32" else x @ b.weight.T
    nbytes = {"values": b.nbytes, "metadata": 0, "scales": 0, "table": 0, "total": b.nbytes}
    return Case(b.name, "baseline", b.bind(x), want, b.rtol, as_numpy, nbytes, {"kernel": None})


def _our_case(p: Prepared, m: int, k: int, rng: np.random.Generator) -> Case:
    """Our kernel on fresh activations, with its reference output (computed once, for every thread count)."""
    info = {"kernel": p.kernel, "format": p.fmt.key, "label": p.fmt.label, "error": p.error}
    if p.weight is None:
        return Case(f"ours {p.fmt.key}", "ours", lambda: None, None, p.fmt.rtol, np.asarray, {}, info)
    x = make_activations(p.fmt, m, k, rng)
    w = p.weight.arg
    try:
        want = np.asarray(p.kernel.reference(x, w))
    except Exception as err:
        info["error"] = f"reference: {type(err).__name__}: {err}"
        want = None
    info |= {"work_ratio": p.weight.work_ratio, "validate_s": p.record.get("validate_s")}
    return Case(f"ours {p.fmt.key}", "ours", lambda: p.kernel(x, w), want, p.fmt.rtol, np.asarray, p.weight.bytes, info)


def _measure(
    config: Config, case: Case, shape: Shape, threads: int, used: int | None, flusher: Flusher | None, log: Log
) -> dict[str, Any]:
    """Check the case's first call, then time it warm (and cold for small M)."""
    m, n, k = shape
    row = _row_head(case, shape, threads, used)
    if case.info.get("error"):
        return row | {"status": "error", "error": case.info["error"]}
    cold = flusher if config.timing and m <= config.cold_max_m else None
    try:
        with peak_rss() as memory:
            row |= _check(case)  # the first call, which is also the warm-up
            warm = time_calls(case.call, config.repeat, config.budget, None) if config.timing else None
            cold_stats = time_calls(case.call, config.repeat, config.budget, cold) if cold else None
    except Exception as err:  # a kernel that raises is a failure to report, not a crash of the suite
        row |= {"status": "error", "error": f"{type(err).__name__}: {err}"}
        log(f"ERROR {case.name} {m}x{n}x{k} threads {threads}: {row['error']}")
        return row
    if row["status"] == "fail":
        log(f"FAIL {case.name} {m}x{n}x{k} threads {threads}: relative error {row['max_rel_error']:.3g}")
    return (
        row
        | _figures(warm, cold_stats, shape, case.nbytes["total"])
        | {"peak_rss_mb": memory[0].peak_mb, "rss_delta_mb": memory[0].delta_mb, "rss_method": memory[0].method}
    )


def _row_head(case: Case, shape: Shape, threads: int, used: int | None) -> dict[str, Any]:
    m, n, k = shape
    fmt = FORMATS.get(case.info.get("format", ""))
    return {
        "name": case.name,
        "kind": case.kind,
        "format": fmt.key if fmt else None,
        "label": fmt.label if fmt else case.name,
        "m": m,
        "n": n,
        "k": k,
        "threads": threads,
        "threads_used": used,
        "dense_equivalent": bool(fmt and fmt.sparse),
        "bytes": case.nbytes,
        "ideal_work_ratio": case.info.get("work_ratio"),
        "validate_s": case.info.get("validate_s"),
        "status": "ok",
        "error": None,
        "max_rel_error": None,
        "rtol": case.rtol,
        **dict.fromkeys(["warm", "cold", "gflops", "gbps", "cold_gflops", "cold_gbps"]),
        **dict.fromkeys(["peak_rss_mb", "rss_delta_mb", "rss_method"]),
        "ratios": {},
        "ratios_cold": {},
    }


def _check(case: Case) -> dict[str, Any]:
    got = case.to_numpy(case.call())
    if case.want is None:
        return {"status": "reference", "max_rel_error": 0.0, "rtol": case.rtol}
    passed, error = check(got, case.want, case.rtol)
    return {"status": "ok" if passed else "fail", "max_rel_error": error, "rtol": case.rtol}


def _figures(warm: Stats | None, cold: Stats | None, shape: Shape, nbytes: int) -> dict[str, Any]:
    m, n, k = shape
    figures: dict[str, Any] = {"warm": warm and warm.to_json(), "cold": cold and cold.to_json()}
    for name, stats in (("warm", warm), ("cold", cold)):
        prefix = "" if name == "warm" else "cold_"
        figures[prefix + "gflops"] = stats and 2 * m * n * k / stats.median_s / 1e9
        figures[prefix + "gbps"] = stats and nbytes / stats.median_s / 1e9
    return figures


def add_ratios(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of our rows gets, per baseline and vs our dense kernel, the baseline's median time
    over ours (above 1: ours is faster), warm and (where measured) cold."""
    for row in group:
        if row["kind"] != "ours":
            continue
        for key in ("warm", "cold"):
            row["ratios" if key == "warm" else "ratios_cold"] = {
                ("ours dense" if other["format"] == "dense" else other["name"]): _ratio(other, row, key)
                for other in group
                if other is not row and (other["kind"] == "baseline" or other["format"] == "dense")
            }
    return group


def _ratio(baseline: dict[str, Any], ours: dict[str, Any], key: str) -> float | None:
    a, b = baseline.get(key), ours.get(key)
    return a["median_s"] / b["median_s"] if a and b else None
