"""The `stoicc` command: compile, run, sim, opt, bench, explore and compress.

Every failure ends in a message and a non-zero exit status, never a Python traceback:
an error located in a source file as `FILE:LINE:COL: error: ...` (the compiler's
diagnostic), any other as one line `stoicc: error: ...` (status 1; 2 for a usage error,
stoicc_py/cmdline.py), anything unexpected as an internal error (status 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from xdsl.utils.exceptions import DiagnosticException, ParseError

from stoicc_py.cmdline import (
    ERROR,
    Parser,
    assignment,
    byte_size,
    integer,
    output_file,
    positive_float,
    write_json,
)
from stoicc_py.codegen.remarks import format_remark, is_remark
from stoicc_py.codegen.remarks import log as remarks_log
from stoicc_py.diagnostics import CompileError
from stoicc_py.options import TARGETS, Options
from stoicc_py.pipeline import TEXT_STAGES, PassCallback, Stage, run_passes
from stoicc_py.timing import is_timing
from stoicc_py.version import __version__

# The compile path, the simulator and the LLVM backend are imported by the commands that use
# them: `stoicc opt`, run ~100 times by the lit suite, needs none of them (0.5 s a start).
if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.passes import ModulePass

    from stoicc_py.abi import TensorSpec
    from stoicc_py.accel import AccelProgram
    from stoicc_py.api import Kernel, Program
    from stoicc_py.backends.accel.simulator import Report
    from stoicc_py.gpu import GpuProgram

log = logging.getLogger(__name__)
VERBOSE_FLAGS = ("-v", "--verbose")
EMITS = (*TEXT_STAGES, "obj", "header", "accel", "isa", "bin", "ptx")
ACCEL_EMITS = ("ir", "accel", "isa", "bin")
GPU_EMITS = ("ir", "opt", "llvm", "ptx")


MAX_REPEAT = 10**6  # timed calls: more is a typo, not a measurement
MAX_ROWS = 2**16  # synthetic calibration rows
MAX_THREADS = 1024
NOTE_AFTER = 1.0  # seconds of compiling before a terminal is told what is going on


def _tile(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(integer(1)(s) for s in text.split(","))
    except argparse.ArgumentTypeError:
        sizes = ()
    if len(sizes) != 3:
        raise argparse.ArgumentTypeError(f"expected three positive integers like 16,64,256, got {text!r}")
    return sizes


_dim = assignment(integer(1), "NAME=SIZE")
_weight = assignment(str, "NAME=FILE.npy")


def _selected(module: ModuleOp, kernel: str | None) -> ModuleOp:
    from stoicc_py.lowering import only_kernel

    if kernel is None:
        return module
    names = [op.sym_name.data for op in module.ops]
    if kernel not in names:
        raise CompileError(f"no kernel '{kernel}' (kernels: {', '.join(names)})")
    return only_kernel(module, kernel)


def _print_after(args: argparse.Namespace) -> PassCallback | None:
    """--print-ir-after-all (pass times are log records: _configure_logging)."""

    def callback(p: ModulePass, module: ModuleOp, _seconds: float) -> None:
        print(f"// -----// IR after {p.name} //----- //\n{module}\n", file=sys.stderr)

    return callback if args.print_ir_after_all else None


@contextmanager
def _compiling_note(file: str, args: argparse.Namespace) -> Iterator[None]:
    """On a terminal, `stoicc: compiling FILE …` once a compile has taken NOTE_AFTER s (so
    that a long one does not look hung), finished with its time. Never on a pipe or a file
    (scripts, tests), nor beside -v, --time-passes or --print-ir-after-all, which print their own."""
    if not sys.stderr.isatty() or args.verbose or args.time_passes or getattr(args, "print_ir_after_all", False):
        yield
        return
    start = time.perf_counter()
    shown = threading.Event()

    def show() -> None:
        print(f"stoicc: compiling {file} …", end="", file=sys.stderr, flush=True)
        shown.set()

    timer = threading.Timer(NOTE_AFTER, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # a note being printed is whole before anything else is
        if shown.is_set():
            print(f" {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def cmd_compile(args: argparse.Namespace) -> int:
    from stoicc_py import lowering
    from stoicc_py.backends.llvm.target import describe, machine_options
    from stoicc_py.backends.llvm.worker import POOL
    from stoicc_py.source import read_source

    _only_for(args, "accel", "dim", "weight", "machine")
    _only_for(args, "cpu", "check_bounds", "mcpu", "mattr")
    options = Options(args.target, args.tile or (), args.check_bounds, args.mcpu or "", args.mattr or "")
    target = machine_options(options.cpu, options.mattr)  # an unknown name is an error before any work
    if args.target == "cpu" and args.emit in ("obj", "llvm-ir", "asm") and args.passes is None:
        POOL.prestart()  # its start overlaps the front end and the passes
    source, file = read_source(args.file)
    with _compiling_note(file, args):
        module = _selected(lowering.front_end(source, file), args.kernel)
        if args.remarks:
            _show_remarks()
            if args.target == "cpu" and args.passes is None and args.emit in ("ir", "opt", "header"):
                lowering.lower(module, Stage.LOOPS, options)  # the loop-level passes make the remarks
        output = _artifact(args, options, file, module, describe(target))
    suffix = {"obj": ".o", "bin": ".bin"}.get(args.emit)
    _write(output, args.output, binary_default=Path(file).with_suffix(suffix) if suffix else None)
    return 0


def _artifact(args: argparse.Namespace, options: Options, file: str, module: ModuleOp, target: str) -> str | bytes:
    """What `stoicc compile` writes: --emit's artifact, or the IR after -p's passes."""
    from stoicc_py.backends.llvm.header import c_header, header_guard
    from stoicc_py.lowering import emit_text, kernel_abis, object_code

    after = _print_after(args)
    if args.passes is not None:
        output: str | bytes = str(run_passes(module, args.passes, after, verify_each=True))
    elif args.target == "accel":
        output = _accel_artifact(module, args, after)
    elif args.target == "gpu":
        output = _gpu_artifact(module, args, after)
    elif args.emit in ACCEL_EMITS[1:]:
        raise CompileError(f"--emit {args.emit} is an accelerator artifact: add --target accel")
    elif args.emit == "ptx":
        raise CompileError("--emit ptx is a GPU artifact: add --target gpu")
    elif args.emit == "obj":
        output = object_code(module, options, after)
    elif args.emit == "header":
        output = c_header(kernel_abis(module, options), guard=header_guard(Path(file).stem), target=target)
    else:
        output = emit_text(module, args.emit, options, after)
    return output


def _accel_artifact(module: ModuleOp, args: argparse.Namespace, after: PassCallback | None) -> str | bytes:
    """The accelerator program(s) of `module`: accel dialect IR, assembly or (one kernel) binary."""
    if args.emit not in ACCEL_EMITS:
        raise CompileError(f"--emit {args.emit} is for --target cpu (accelerator artifacts: {', '.join(ACCEL_EMITS)})")
    if args.emit == "ir":
        return str(module)
    from xdsl.dialects.builtin import ModuleOp

    from stoicc_py.accel import AccelProgram
    from stoicc_py.backends.accel.isa import Program as MachineProgram
    from stoicc_py.source import read_source

    source, file = read_source(args.file)
    program = AccelProgram(source, file, args.tile or (), args.machine or "")
    kernels = _kernels(program, args)
    tables = _tile_tables(kernels, dict(args.weight or []))
    lowered = [program.lowered(k.name, dict(args.dim or []), tables[k.name], after) for k in kernels]
    if args.emit == "accel":
        return str(ModuleOp([fn.clone() for fn in lowered]))
    programs = [MachineProgram.of(fn) for fn in lowered]
    if args.emit == "isa":
        return "\n".join(p.to_asm() for p in programs)
    if len(programs) != 1:
        names_list = ", ".join(p.name for p in programs)
        raise CompileError(f"--emit bin writes one kernel; choose one with --kernel ({names_list})")
    return programs[0].to_bytes()


def _gpu_artifact(module: ModuleOp, args: argparse.Namespace, after: PassCallback | None) -> str:
    """The GPU kernels of `module`: the tensor-level IR with gpu-tile's tiles, LLVM IR or PTX
    (each kernel's schedule for calls of more than 8 rows of x)."""
    if args.emit not in GPU_EMITS:
        raise CompileError(f"--emit {args.emit} is not a GPU artifact (GPU artifacts: {', '.join(GPU_EMITS)})")
    if args.emit == "ir":
        return str(module)
    from stoicc_py.gpu import GpuProgram
    from stoicc_py.source import read_source

    source, file = read_source(args.file)
    program = GpuProgram(source, file, args.tile or (), after)
    kernels = [program.kernel(args.kernel)] if args.kernel else list(program.kernels.values())
    if args.emit == "opt":
        return "\n".join(str(k.opt) for k in kernels)
    return "\n".join(k.llvm_ir() if args.emit == "llvm" else k.ptx() for k in kernels)


def _only_for(args: argparse.Namespace, target: str, *options: str) -> None:
    """Refuse `options` given with a target other than `target` (rather than ignore them)."""
    if args.target != target and (given := [o for o in options if getattr(args, o)]):
        flags = ", ".join(f"--{o.replace('_', '-')}" for o in given)
        raise CompileError(f"{flags} {'applies' if len(given) == 1 else 'apply'} to --target {target}")


def _tile_tables(kernels: list[Any], weights: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per kernel, the tile tables of its hybrid weights given as `--weight NAME=FILE.npy` (packed here)."""
    from stoicc_py.models.weights import load_array  # models imports ml_dtypes, which a compile never needs

    hybrid = {k.name: [s.name for s in k.abi.params if s.layout.startswith("hybrid")] for k in kernels}
    known = sorted({name for names in hybrid.values() for name in names})
    if unknown := sorted(set(weights) - set(known)):
        raise CompileError(f"--weight {', '.join(unknown)}: no hybrid weight of that name "
                           f"(hybrid weights: {', '.join(known) or 'none'})")  # fmt: skip
    arrays = {name: load_array(path) for name, path in weights.items()}
    return {k.name: {n: k.pack(n, arrays[n]).arrays["table"] for n in hybrid[k.name] if n in arrays} for k in kernels}


def _write(output: str | bytes, path: str | None, binary_default: Path | None) -> None:
    if isinstance(output, bytes):
        target = Path(path) if path else binary_default
        assert target is not None
        target.write_bytes(output)
        print(f"wrote {target} ({len(output)} bytes)", file=sys.stderr)
    elif path:
        Path(path).write_text(output if output.endswith("\n") else output + "\n")
    else:
        print(output)


def _kernels(program: Program | AccelProgram | GpuProgram, args: argparse.Namespace) -> list[Any]:
    """The kernels the command works on (--kernel, or all); a --dim that none of them has is an error."""
    kernels = [program.kernel(args.kernel)] if args.kernel else list(program.kernels.values())
    symbols = sorted({s for k in kernels for s in k.abi.symbols})
    if unknown := sorted(set(dict(args.dim or [])) - set(symbols)):
        which = f"kernel '{kernels[0].name}'" if len(kernels) == 1 else "the kernels"
        raise CompileError(f"--dim {', '.join(unknown)}: {which} {'have' if len(kernels) > 1 else 'has'} no such "
                           f"size symbol (size symbols: {', '.join(symbols) or 'none'})")  # fmt: skip
    return kernels


def _check(name: str, got: Any, want: Any, rtol: float, sizes: str, timing: str = "") -> bool:
    """Print how far `got` is from the reference; integer results must be bit-exact."""
    got_t, want_t = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    failed = False
    for i, (g, w) in enumerate(zip(got_t, want_t)):
        err = float(np.max(np.abs(g.astype(np.float64) - w))) if g.size else 0.0
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        if g.dtype.kind == "i":
            ok, how = bool(np.array_equal(g, w)), "bit-exact"
        else:
            ok, how = bool(np.allclose(g, w, rtol=rtol, atol=rtol * max(scale, 1e-30))), f"rtol {rtol:g}"
        failed |= not ok
        print(f"{name} out{i} [{sizes}]: max abs error {err:.3e} (max |ref| {scale:.3e}) "
              f"{'ok' if ok else 'MISMATCH'} ({how}){timing}")  # fmt: skip
    return failed


def cmd_run(args: argparse.Namespace) -> int:
    from stoicc_py.api import compile
    from stoicc_py.backends.llvm.target import host_options

    if args.target == "accel":
        return cmd_sim(args)
    _only_for(args, "accel", "machine", "json")
    if (args.mcpu or args.mattr) and (args.mcpu not in ("", None, host_options().cpu) or args.mattr):
        raise CompileError(f"stoicc run runs the kernels on this CPU ({host_options().cpu}): --mcpu and --mattr "
                           "of another one apply to stoicc compile --emit obj|asm|header")  # fmt: skip
    with _compiling_note(str(args.file), args):
        program = compile(
            args.file, args.target, tile=args.tile or (), cache=not args.no_cache, check_bounds=args.check_bounds
        )
    return _run_checked(program, args)


def _run_checked(program: Program | AccelProgram | GpuProgram, args: argparse.Namespace) -> int:
    """Every kernel (or --kernel) on random inputs against the reference: native calls
    timed (--repeat), simulated ones with their report."""
    from stoicc_py.api import Program

    dims = dict(args.dim or [])
    rng = np.random.default_rng(args.seed)
    failed = False
    reports = _Reports(args.json)
    for k in _kernels(program, args):
        inputs = [_random_input(k, p, dims, rng) for p in k.abi.params]
        got = k(*inputs)
        timing = ""
        if isinstance(program, Program):
            start = time.perf_counter()
            for _ in range(args.repeat):
                got = k(*inputs)
            timing = f"; {(time.perf_counter() - start) / args.repeat * 1e6:.1f} us per call"
        sizes = ", ".join(f"{s}={dims.get(s, 16)}" for s in k.abi.symbols)
        failed |= _check(k.name, got, k.reference(*inputs), args.rtol, sizes, timing)
        if (report := getattr(k, "last_report", None)) is not None:  # the accelerator's
            reports.add(report)
    reports.finish()
    return 1 if failed else 0


def cmd_sim(args: argparse.Namespace) -> int:
    """Simulate on the accelerator: a .tdsl kernel on random inputs, checked against
    the reference, or an assembled program (.s / .bin) on random input bytes."""
    from stoicc_py.api import compile
    from stoicc_py.backends.accel.isa import Program as MachineProgram
    from stoicc_py.backends.accel.machine import Machine
    from stoicc_py.backends.accel.simulator import simulate
    from stoicc_py.source import decode_source

    machine = Machine.load(args.machine) if args.machine else None
    if args.file.suffix not in (".s", ".bin"):
        return _run_checked(compile(args.file, "accel", tile=args.tile or (), machine=args.machine), args)
    data = args.file.read_bytes()
    if args.file.suffix == ".bin":
        program = MachineProgram.from_bytes(data)
    else:
        program = MachineProgram.from_asm(decode_source(data, str(args.file)), str(args.file))
    rng = np.random.default_rng(args.seed)
    inputs = {s.name: rng.integers(0, 256, s.size, dtype=np.uint8) for s in program.segments if s.kind == "input"}
    _, report = simulate(program, inputs, machine)
    assert report is not None
    print(f"{program.name}: random inputs, no reference to check against")
    reports = _Reports(args.json)
    reports.add(report)
    reports.finish()
    return 0


class _Reports:
    """The simulation reports of a command: printed, and (--json) the file rewritten after each
    one, `{"complete": false, "reports": [...]}` until the last."""

    def __init__(self, path: str | None):
        self.path = path
        self.reports: list[Any] = []

    def add(self, report: Report) -> None:
        print(report.table() + "\n")
        self.reports.append(json.loads(report.to_json()))  # Report gives JSON text only
        self._write(complete=False)

    def finish(self) -> None:
        if self.reports:
            self._write(complete=True)

    def _write(self, complete: bool) -> None:
        if self.path:
            write_json(self.path, {"complete": complete, "reports": self.reports})


def _random_input(k: Kernel, spec: TensorSpec, dims: dict[str, int], rng: np.random.Generator) -> Any:
    """Standard-normal values; a sparse parameter gets half its entries zeroed and is
    pruned by magnitude to its pattern; non-dense parameters are packed."""
    from stoicc_py.arrays import NUMPY_DTYPES
    from stoicc_py.dialects.layout import ComposedLayoutAttr, SparseLayoutAttr
    from stoicc_py.dims import evaluate as dim_value
    from stoicc_py.dims import symbols as dim_symbols
    from stoicc_py.frontend.layouts import parse_layout
    from stoicc_py.limits import check_size

    sizes = {s: dims.get(s, 16) for d in spec.dims for s in dim_symbols(d)}
    shape = [dim_value(d, sizes) for d in spec.dims]  # a dim expression (P+T) from its symbols
    check_size(shape, f"--dim: parameter '{spec.name}' of {k.name}")
    values = rng.standard_normal(shape).astype(np.float32)
    if spec.dtype == "i8":
        values = rng.integers(-128, 128, shape, dtype=np.int8)  # type: ignore[assignment]
    elif spec.dtype == "i32":
        values = rng.integers(-(2**20), 2**20, shape, dtype=np.int32)  # type: ignore[assignment]
    if spec.is_dense:  # f16/bf16 rounded here: a call and the reference take the parameter's dtype
        return values.astype(NUMPY_DTYPES[spec.dtype], copy=False)
    if not isinstance(parse_layout(spec.layout), SparseLayoutAttr | ComposedLayoutAttr):
        return k.pack(spec.name, values)
    values[rng.random(values.shape) < 0.5] = 0
    return k.pack(spec.name, values, prune="magnitude")


def cmd_opt(argv: Sequence[str]) -> int:
    from stoicc_py.opt_main import OptMain

    OptMain(description="Run named passes on IR (.mlir) or on a .tdsl file's IR, like xdsl-opt.",
             args=list(argv)).run()  # fmt: skip
    return 0


def cmd_bench(argv: Sequence[str]) -> int:
    """The CPU benchmark suite (benchmarks/, installed as stoicc_py.benchmarks)."""
    try:
        from stoicc_py.benchmarks.suite import main as bench_main
    except ImportError as err:
        raise ImportError(f"the benchmark suite is not installed ({err}); reinstall: pip install -e .") from None
    return bench_main(argv)


def cmd_explore(args: argparse.Namespace) -> int:
    """Every format on the selected weight matrices (stoicc_py/explore.py, docs/explore.md)."""
    from stoicc_py import explore as ex
    from stoicc_py import explore_report as report
    from stoicc_py.models.weights import load_weights

    if _is_model(args):
        return _explore_model(args)
    if args.plot:
        report.check_plotting()
    known = ex.candidates(args.tile)
    keys = args.formats.split(",") if args.formats else list(ex.DEFAULT_FORMATS)
    if unknown := [k for k in keys if k not in known]:
        raise ValueError(f"--formats: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    matrices = ex.select(load_weights(args.file), args.select or [])
    calibration = ex.load_calibration(args.calibration, args.rows, args.seed)
    show = not args.quiet and sys.stderr.isatty()
    meta = {"input": args.file, "matrices": {n: list(w.shape) for n, w in matrices.items()},
            "calibration": calibration.description, "threads": args.threads,
            "accel_rows": args.accel_rows, "hybrid_tile": args.tile}  # fmt: skip

    def on_result(results: list[ex.Result], total: int) -> None:
        if show:
            _progress_bar(len(results), total, f"{results[-1].matrix} {results[-1].format}")
        if args.json:
            report.write_json(args.json, meta, results, complete=False)

    settings = ex.Settings(args.threads, args.accel_rows, on_result=on_result)
    print(f"{len(matrices)} matrices of {args.file}; calibration: {calibration.description}; "
          f"CPU: median of {settings.repeat} calls on all rows, {settings.threads} thread(s); "
          f"accelerator: the first {settings.accel_rows} rows", flush=True)  # fmt: skip
    results = ex.explore(matrices, [known[k] for k in keys], calibration, settings)
    summaries = report.summarize(results)
    print(report.table(summaries))
    if args.per_matrix:
        for name in matrices:
            print(f"\n{name} {list(matrices[name].shape)}\n" + report.table([r for r in results if r.matrix == name]))
    if args.json:
        report.write_json(args.json, meta, results, complete=True)
    if args.plot:
        report.plot(
            args.plot, summaries, f"{Path(args.file).name}: {len(matrices)} matrices, {calibration.description}"
        )
    return 0


def _is_model(args: argparse.Namespace) -> bool:
    """Whether `stoicc explore` judges a whole model (a .gguf file) or matrices; ValueError for
    an option of the other kind."""
    if Path(args.file).suffix == ".gguf":
        if given := [o for o in ("select", "calibration", "plot") if getattr(args, o)]:
            raise ValueError(f"--{given[0]} is for .safetensors/.npz weights, not a .gguf model (docs/explore.md)")
        return True
    if given := [k for k in MODEL_OPTIONS if getattr(args, k) not in (None, False)]:
        raise ValueError(f"--{given[0].replace('_', '-')} is for a .gguf model (docs/explore.md)")
    return False


MODEL_OPTIONS = ("text", "calibration_text", "stride", "eval_tokens", "budget", "recipe_out", "dask", "scheduler")
"""`stoicc explore` options that only a .gguf model takes (those with defaults aside)."""


def _explore_model(args: argparse.Namespace) -> int:
    """`stoicc explore MODEL.gguf`: candidates on a whole LLaMA model (stoicc_py/explore_model.py)."""
    from stoicc_py import explore as ex
    from stoicc_py import explore_model as em
    from stoicc_py import explore_report as report
    from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf

    known = em.model_candidates()
    keys = args.formats.split(",") if args.formats else list(known)
    if unknown := [k for k in keys if k not in known]:
        raise ValueError(f"--formats: unknown {', '.join(unknown)} (known for a model: {', '.join(known)})")
    if args.text is None:
        raise ValueError("a .gguf model is judged by perplexity: give an English text with --text FILE")
    scheduler = args.scheduler or ("local" if args.dask else None)
    if scheduler:
        em.dask_distributed()  # now, not after minutes of work
    weights, tok = load_gguf(args.file), gguf_tokenizer(args.file)
    texts, described = _model_texts(args, tok)
    chosen = {k: known[k] for k in keys}
    print(f"{args.file}: {len(weights.layers)} layers; {described}", flush=True)
    calibration = ex.load_calibration(None, args.rows, args.seed)
    settings, kernels = ex.Settings(args.threads, args.accel_rows), ex.Kernels()
    start = time.perf_counter()

    def said(what: str) -> None:
        if not args.quiet:
            print(f"  {what} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    costs = {}
    for key, layout, options in [(em.DENSE, em.DENSE, {}), *((c.key, c.layout, c.options) for c in chosen.values())]:
        costs[key] = em.kernel_cost(weights, key, layout, options, calibration, kernels, settings)
        said(f"{key}: kernels measured")

    def on_result(e: em.Evaluation) -> None:
        said(f"{e.key}: {'refused' if e.error else f'ppl {e.ppl:.3f}'}")

    evaluations = em.evaluate_all(weights, texts, list(chosen.values()), scheduler, args.workers, on_result=on_result)
    rows = report.model_rows(evaluations, costs, chosen)
    print(report.model_table(rows))
    if args.per_matrix:
        print("\nper layer: perplexity of the short text, only that layer compressed, minus float32's\n"
              + report.layer_table(evaluations))  # fmt: skip
    out: dict[str, Any] = {"input": args.file, "texts": described, "rows": rows,
                           "layer_ppl": {e.key: e.layer_ppl for e in evaluations},
                           "layer_bytes": {e.key: e.layer_bytes for e in evaluations}}  # fmt: skip
    if args.budget is not None:
        out["proposal"] = _propose(args, weights, texts, evaluations, chosen)
    if args.json:
        write_json(args.json, out)
    return 0


def _model_texts(args: argparse.Namespace, tok: Any) -> tuple[Any, str]:
    """The token windows explore_model needs, and a sentence saying what they are."""
    from stoicc_py.explore_model import Texts
    from stoicc_py.models.llama_model import calibration_windows

    tokens = tok.encode(Path(args.text).read_text()).ids
    calib_file = args.calibration_text or args.text
    calib = tok.encode(Path(calib_file).read_text()).ids
    eval_tokens = tokens[: args.eval_tokens] if args.eval_tokens else tokens
    texts = Texts(calibration_windows(calib, args.window, args.stride or args.window // 2),
                  tokens[: args.layer_tokens], eval_tokens, args.window)  # fmt: skip
    said = (f"calibration: {calib_file} ({len(calib)} tokens, {sum(map(len, texts.calibration))} rows); "
            f"per-layer perplexity: the first {len(texts.layer_tokens)} tokens of {args.text}; "
            f"whole-model perplexity: {len(eval_tokens)} tokens of it in windows of {args.window}")  # fmt: skip
    return texts, said


def _propose(args: argparse.Namespace, weights: Any, texts: Any, evaluations: Any, chosen: Any) -> dict[str, Any]:
    """The proposal for --budget: printed, its recipe written (--recipe-out) or printed, and its perplexity."""
    from stoicc_py import explore_model as em
    from stoicc_py.models.llama_model import NumpyLlama, perplexity

    proposal = em.propose(evaluations, args.budget)
    ppl = perplexity(NumpyLlama(em.proposed_weights(weights, evaluations, proposal)), texts.eval_tokens, texts.window)
    base = evaluations[0].ppl
    header = (f"stoicc explore {Path(args.file).name} --budget {args.budget}: {proposal.bytes:,} bytes of projections, "
              f"predicted sum of per-layer perplexity increases {proposal.predicted_delta:+.3f}; "
              f"whole-model perplexity {ppl:.3f} ({ppl / base:.3f} x float32's {base:.3f})")  # fmt: skip
    text = em.recipe_text(proposal, chosen, header)
    print(f"\nproposal for {args.budget:,} bytes: {header.split(': ', 1)[1]}")
    if args.recipe_out:
        Path(args.recipe_out).write_text(text)
        print(f"wrote {args.recipe_out}")
    else:
        print(text, end="")
    return {"budget": args.budget, "choice": proposal.choice, "bytes": proposal.bytes,
            "predicted_delta": proposal.predicted_delta, "ppl": ppl, "recipe": text}  # fmt: skip


def cmd_compress(args: argparse.Namespace) -> int:
    """Pack a model's matrices as a recipe says and write them (stoicc_py/compress.py, docs/compress.md)."""
    from stoicc_py import compress as cp

    recipe = cp.load_recipe(args.recipe)
    rows = (_compress_llama if args.model.suffix == cp.LLAMA_SUFFIX else _compress_weights)(args, recipe)
    if not args.quiet:
        print(cp.table(rows))
    print(f"wrote {args.output}")
    return 0


def _compress_weights(args: argparse.Namespace, recipe: Any) -> list[Any]:
    from stoicc_py import compress as cp
    from stoicc_py.explore import load_calibration
    from stoicc_py.packing import save_packed

    weights = cp.load_model(args.model)
    _warn_unused(args, cp.unused(recipe, list(weights)))
    calibration = load_calibration(args.calibration, 0, 0) if args.calibration else None
    tensors, rows = cp.compress(weights, recipe, calibration)
    save_packed(tensors, args.output)
    return rows


def _compress_llama(args: argparse.Namespace, recipe: Any) -> list[Any]:
    """A LLaMA-family GGUF model, layer by layer, calibrated on the text file --calibration."""
    from stoicc_py import compress as cp
    from stoicc_py.models.llama_packed import llama_arrays, save_llama

    weights, windows = cp.load_gguf_model(args.model, Path(args.calibration) if args.calibration else None)
    _warn_unused(args, cp.unused(recipe, list(llama_arrays(weights))))
    out, rows = cp.compress_llama(weights, recipe, windows)
    save_llama(args.output, out.weights, out.packed)
    return rows


def _warn_unused(args: argparse.Namespace, globs: list[str]) -> None:
    for glob in globs:
        print(f"stoicc: warning: {args.recipe}: layers.{glob!r} matches no tensor of {args.model}", file=sys.stderr)


def _compress_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser("compress", parents=[common],
                       help="pack a model's weight matrices as a recipe says; write packed weights")  # fmt: skip
    c.add_argument("model", type=Path,
                   help="weights: .safetensors or .npz (f32, bf16, f16...), or a LLaMA-family .gguf model")  # fmt: skip
    c.add_argument("--recipe", required=True, metavar="FILE", help="a TOML recipe (docs/compress.md)")
    c.add_argument("-o", "--output", required=True, type=output_file,
                   help="the packed weights to write (.safetensors; stoicc_py.load_packed reads them)")  # fmt: skip
    c.add_argument("--calibration", metavar="FILE",
                   help="activations [rows, K] for the methods and options that need them: .npy, or .npz by weight "
                   "name; for a .gguf model, a text file (tokenized with its tokenizer)")  # fmt: skip
    c.add_argument("-q", "--quiet", action="store_true", help="no table")


def _progress_bar(done: int, total: int, what: str, width: int = 30) -> None:
    filled = width * done // total
    bar = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what[:60]:<60}"
    print(bar, end="\n" if done == total else "", file=sys.stderr, flush=True)


def _explore_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    e = sub.add_parser("explore", parents=[common],
                       help="try every weight format on the matrices of a .safetensors/.npz file")  # fmt: skip
    e.add_argument("file", help="weights: .safetensors or .npz (f32, bf16, f16...)")
    e.add_argument("--select", action="append", metavar="GLOB",
                   help="tensor names to try (fnmatch; repeatable); default: every 2-D tensor but *embed*")  # fmt: skip
    e.add_argument("--calibration", metavar="FILE",
                   help="activations [rows, K]: .npy, or .npz by weight name (else synthetic standard-normal rows)")  # fmt: skip
    e.add_argument("--rows", type=integer(1, MAX_ROWS), default=64,
                   help="rows of synthetic calibration activations (default 64)")  # fmt: skip
    e.add_argument("--accel-rows", type=integer(1), default=16, help="rows simulated on the accelerator (default 16)")
    e.add_argument("--formats", help="comma-separated format keys (default: all; see docs/explore.md)")
    e.add_argument("--tile", type=integer(1), default=64, help="hybrid tile size (default 64)")
    e.add_argument("--threads", type=integer(1, MAX_THREADS), default=1, help="CPU threads per call (default 1)")
    e.add_argument("--seed", type=integer(0), default=0, help="of the synthetic calibration")
    e.add_argument("--per-matrix", action="store_true", help="also print one table per matrix")
    e.add_argument("--json", type=output_file, help="write every measurement to this file (after each one)")
    e.add_argument("--plot", type=output_file, help="write the Pareto plot (PNG; needs matplotlib)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    m = e.add_argument_group("a .gguf model (LLaMA family): perplexity per layer and whole (docs/explore.md)")
    m.add_argument("--text", metavar="FILE", help="the evaluation text (required for a .gguf model)")
    m.add_argument("--calibration-text", metavar="FILE", help="the calibration text (default: --text)")
    m.add_argument("--window", type=integer(2), default=512, help="tokens per window (default 512)")
    m.add_argument("--stride", type=integer(1), help="calibration windows start every STRIDE tokens (default window/2)")
    m.add_argument("--layer-tokens", type=integer(2), default=256,
                   help="the first tokens of --text that judge each layer alone (default 256)")  # fmt: skip
    m.add_argument(
        "--eval-tokens", type=integer(2), help="tokens of --text for the whole-model perplexity (default all)"
    )
    m.add_argument(
        "--budget", type=byte_size, help="propose a recipe whose projections fit this many bytes (e.g. 60MB)"
    )
    m.add_argument("--recipe-out", type=output_file, help="write the proposed recipe (TOML) here")
    m.add_argument("--dask", action="store_true", help="evaluate the candidates on a local Dask cluster")
    m.add_argument("--scheduler", metavar="ADDRESS", help="evaluate the candidates on this Dask scheduler")
    m.add_argument("--workers", type=integer(1), default=2, help="workers of --dask's local cluster (default 2)")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="stoicc", description="Compiler for sparse and quantized tensor kernels.")
    top.add_argument(*VERBOSE_FLAGS, dest="verbose", action="store_true", help="log what the compiler does")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    # -v after the command too; SUPPRESS keeps a sub-parser's default from overriding the top one
    common = Parser(add_help=False)
    common.add_argument(*VERBOSE_FLAGS, dest="verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what the compiler does (stderr)")  # fmt: skip
    common.add_argument("--time-passes", action="store_true",
                        help="log the time of every pass and LLVM step of a compile (stderr)")  # fmt: skip

    c = sub.add_parser("compile", parents=[common], help="compile a .tdsl file and print or write an artifact")
    c.add_argument("file", type=Path)
    c.add_argument("--kernel", help="only this kernel")
    c.add_argument("--target", default="cpu", choices=TARGETS)
    c.add_argument("--emit", default="ir", choices=EMITS,
                   help="what to output (default: ir); accel: ir, accel (the accel dialect), isa, bin; gpu: ir, opt, llvm, ptx")  # fmt: skip
    c.add_argument(
        "-o", "--output", type=output_file, help="output file (default: stdout; FILE.o for obj, FILE.bin for bin)"
    )
    c.add_argument("--dim", type=_dim, action="append", help="accel: size of a symbol, e.g. M=64")
    c.add_argument("--machine", help="accel: a TOML machine description overriding the default")
    c.add_argument("--weight", type=_weight, action="append",
                   help="accel: NAME=FILE.npy, a hybrid weight whose tile table the program follows")  # fmt: skip
    c.add_argument(
        "-p", "--passes", help="run this pass pipeline on the front end's IR instead, e.g. tdsl-fuse-epilogue"
    )
    c.add_argument("--tile", type=_tile, help="matrix-product tile sizes tm,tn,tk")
    c.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    c.add_argument("--check-bounds", action="store_true",
                   help="cpu: check every memory access against its buffer (the C ABI gains extents and a status)")  # fmt: skip
    c.add_argument("--remarks", action="store_true",
                   help="cpu: name every op that runs as a scalar loop nest and why (as clang's -Rpass-missed; stderr)")  # fmt: skip

    r = sub.add_parser("run", parents=[common], help="compile, run on random inputs, check against the reference")
    r.add_argument("file", type=Path)
    r.add_argument("--kernel", help="only this kernel")
    r.add_argument("--target", default="cpu", choices=TARGETS)
    r.add_argument("--dim", type=_dim, action="append", help="size of a symbol, e.g. M=17 (default 16)")
    r.add_argument("--seed", type=integer(0), default=0)
    r.add_argument("--repeat", type=integer(1, MAX_REPEAT), default=10, help="calls to time")
    r.add_argument(
        "--rtol", type=positive_float, default=1e-4, help="tolerance relative to the largest reference value"
    )
    r.add_argument("--tile", type=_tile, help="matrix-product tile sizes tm,tn,tk")
    r.add_argument("--no-cache", action="store_true", help="do not use the on-disk kernel cache")
    r.add_argument("--check-bounds", action="store_true", help="check every memory access against its buffer")
    for cmd in (c, r):
        cmd.add_argument("--mcpu", metavar="CPU",
                         help="cpu: generate code for this CPU (LLVM's names, as llc -mcpu: x86-64-v3, znver4, ...; "
                              "default: this host's); run: only this host's")  # fmt: skip
        cmd.add_argument("--mattr", metavar="+F,-F",
                         help="cpu: features to add or remove on top of the CPU's, e.g. --mattr=+avx2,-avx512f")  # fmt: skip

    s = sub.add_parser(
        "sim", parents=[common], help="simulate on the accelerator: check against the reference, report costs"
    )
    s.add_argument("file", type=Path, help=".tdsl source, or an assembled program (.s, .bin) run on random inputs")
    s.add_argument("--kernel", help="only this kernel")
    s.add_argument("--dim", type=_dim, action="append", help="size of a symbol, e.g. M=64 (default 16)")
    s.add_argument("--seed", type=integer(0), default=0)
    s.add_argument("--rtol", type=positive_float, default=1e-4, help="tolerance of float results (integers: exact)")
    s.add_argument("--tile", type=_tile, help="matrix-product tile sizes tm,tn,tk")
    for cmd in (r, s):  # run --target accel is sim
        cmd.add_argument("--machine", help="accel: a TOML machine description overriding the default")
        cmd.add_argument("--json", type=output_file,
                         help="accel: also write the reports as JSON to this file (after each kernel)")  # fmt: skip

    sub.add_parser(
        "opt", help="run passes on IR text (stoicc opt FILE -p PASSES); see stoicc opt --help", add_help=False
    )
    sub.add_parser("bench", help="CPU benchmarks against numpy, PyTorch, llama.cpp; see stoicc bench --help",
                   add_help=False)  # fmt: skip
    _explore_parser(sub, common)
    _compress_parser(sub, common)
    return top


class _Handler(logging.StreamHandler):
    """The command's own handlers, removed when main() returns."""


def _configure_logging(verbose: bool, time_passes: bool) -> None:
    """Warnings only; -v: every record of stoicc_py's loggers (DEBUG up) as `stoicc: ...`;
    --time-passes: the timing records (stoicc_py.timing) as `// NAME: T ms`."""
    package = logging.getLogger("stoicc_py")
    package.setLevel(logging.DEBUG if verbose or time_passes else logging.WARNING)
    general = _Handler(sys.stderr)
    general.setFormatter(logging.Formatter("stoicc: %(message)s"))
    general.setLevel(logging.DEBUG if verbose else logging.WARNING)
    package.addHandler(general)
    if time_passes:
        general.addFilter(lambda record: not is_timing(record))
        timing = _Handler(sys.stderr)
        timing.setFormatter(logging.Formatter("// %(message)s"))
        timing.addFilter(is_timing)
        package.addHandler(timing)


def _show_remarks() -> None:
    """The remarks of stoicc_py.remarks (codegen/remarks.py) on stderr, `FILE:LINE:COL: remark: ...`."""
    remarks_log.setLevel(logging.INFO)
    handler = _Handler(sys.stderr)
    handler.addFilter(is_remark)
    handler.setFormatter(_RemarkFormatter())
    logging.getLogger("stoicc_py").addHandler(handler)


class _RemarkFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return format_remark(record)


def _reset_logging() -> None:
    remarks_log.setLevel(logging.NOTSET)
    package = logging.getLogger("stoicc_py")
    for handler in [h for h in package.handlers if isinstance(h, _Handler)]:
        package.removeHandler(handler)
    package.setLevel(logging.NOTSET)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        status = _command(argv)
        sys.stdout.flush()  # a reader that has gone shows here, not in the flush at exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    finally:  # main() also runs in-process (tests, embedding programs): leave no handler behind
        _reset_logging()


# What a command reports as an error of its input, in one line (any other exception is internal;
# so is a SimulationError: _is_user_error).
USER_ERRORS = (DiagnosticException, ParseError, OSError, ValueError, TypeError, KeyError, ImportError)


def _command(argv: list[str]) -> int:
    """The command's exit status; every error reported on stderr without a traceback."""
    try:
        command = argv[1:] if argv[:1] and argv[0] in VERBOSE_FLAGS else argv
        if command[:1] in (["opt"], ["bench"]):  # their own parsers; only a leading -v is ours
            _configure_logging(command is not argv, False)
            return (cmd_opt if command[0] == "opt" else cmd_bench)(command[1:])
        args = parser().parse_args(argv)
        _configure_logging(args.verbose, args.time_passes)
        return {"compile": cmd_compile, "run": cmd_run, "sim": cmd_sim, "explore": cmd_explore,
                "compress": cmd_compress}[args.command](args)  # fmt: skip
    except BrokenPipeError:
        raise  # not an error of the input: main()
    except KeyboardInterrupt:
        print("stoicc: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if _is_user_error(err):
            print(error_message(err), file=sys.stderr)
            return 1
        # an internal error must still not show a traceback to the user
        log.debug("internal error", exc_info=True)
        print(f"stoicc: internal compiler error: {type(err).__name__}: {err}\n"
              "please report it with the input that caused it (run with -v for details)", file=sys.stderr)  # fmt: skip
        return 2


def _is_user_error(err: Exception) -> bool:
    """An error of the command's input: USER_ERRORS, or a program the simulator cannot run
    (its module, imported here rather than by every command, is loaded if it raised one)."""
    if isinstance(err, USER_ERRORS):
        return True
    functional = sys.modules.get("stoicc_py.backends.accel.functional")
    return functional is not None and isinstance(err, functional.SimulationError)


def error_message(err: BaseException) -> str:
    """The one diagnostic of a failed command: an error located in a source file as the compiler
    writes it (`FILE:LINE:COL: error: ...`, the line and a caret), any other as `stoicc: error: ...`."""
    if isinstance(err, CompileError):
        return str(err) if err.loc else ERROR + err.message
    if isinstance(err, OSError) and err.filename is not None:  # str() would be `[Errno 2] ...: 'FILE'`
        return f"{ERROR}{err.filename}: {err.strerror}"
    if isinstance(err, KeyError) and err.args:  # str() of a KeyError is the repr of its message
        return ERROR + str(err.args[0])
    return ERROR + str(err)


def _reader_gone() -> int:
    """stdout's reader has gone (`stoicc ... | head`): as the Python docs advise, point stdout at
    /dev/null so that the flush at exit cannot fail again, and exit as SIGPIPE would (128 + 13)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (in process: a test's capture)
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
