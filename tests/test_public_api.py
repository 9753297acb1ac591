"""The stable API: every name of stoicc_py.__all__ resolves, keeps its parameters and
has docstrings on itself and its public members; docs/api.md lists every name; the
README and the docs' Python examples use only public names."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import stoicc_py

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {
    "AccelKernel", "AccelProgram", "BufferSpec", "ColumnSplit", "CompileError", "GpuKernel", "GpuProgram", "Kernel",
    "KernelABI", "MachineProgram",
    "PackedTensor", "Program", "Report", "RowSplit", "TensorSpec", "compile", "get_threads", "load", "load_packed", "pack",
    "plan_hybrid", "save_packed", "set_threads", "simulate", "StoiccWarning",
}  # fmt: skip
SIGNATURES = {
    "compile": ["source_or_path", "target", "tile", "cache", "machine", "check_bounds"],
    "pack": ["w", "layout", "prune", "plan", "calibrate", "activations", "alpha", "sparsity", "dtype", "method", "hessian",
             "act_order", "damp", "grid"],
    "plan_hybrid": ["w", "tile", "sparsity", "x", "cost"],
    "save_packed": ["tensors", "path", "metadata"],
    "load_packed": ["path"],
    "load": ["path"],
    "set_threads": ["n"],
    "get_threads": [],
    "simulate": ["program", "inputs", "machine", "timing"],
    "Program.kernel": ["self", "name"],
    "Program.header": ["self"],
    "Program.ir": ["self", "stage", "kernel"],
    "Kernel.__call__": ["self", "args"],
    "Kernel.reference": ["self", "args"],
    "Kernel.pack": ["self", "param", "w", "options"],
    "Kernel.ir": ["self", "stage"],
    "AccelProgram.kernel": ["self", "name"],
    "AccelKernel.__call__": ["self", "args"],
    "AccelKernel.program_for": ["self", "tables", "sizes"],
    "AccelKernel.isa": ["self", "sizes"],
    "AccelKernel.reference": ["self", "args"],
    "AccelKernel.pack": ["self", "param", "w", "options"],
    "GpuProgram.kernel": ["self", "name"],
    "GpuKernel.__call__": ["self", "args", "out"],
    "GpuKernel.prepare": ["self", "args", "out"],
    "GpuKernel.to_device": ["self", "param", "w"],
    "GpuKernel.ptx": ["self", "m"],
    "GpuKernel.llvm_ir": ["self", "m"],
    "PackedTensor.buffers": ["self"],
    "PackedTensor.unpack": ["self"],
    "PackedTensor.dequantize": ["self"],
    "PackedTensor.nbytes_breakdown": ["self"],
    "PackedTensor.error": ["self", "w"],
    "PackedTensor.validate": ["self"],
    "PackedTensor.check": ["self"],
    "PackedTensor.save": ["self", "path"],
    "Report.table": ["self"],
    "Report.to_json": ["self"],
    "MachineProgram.to_asm": ["self"],
    "MachineProgram.to_bytes": ["self"],
    "MachineProgram.from_asm": ["text", "file"],
    "MachineProgram.from_bytes": ["data"],
    "MachineProgram.segment": ["self", "name"],
    "KernelABI.to_json": ["self"],
    "KernelABI.from_json": ["data"],
    "CompileError.with_source": ["self", "source"],
}
PROPERTIES = {
    "Kernel": ["threads", "module"],
    "PackedTensor": ["nbytes", "high_fraction", "msb_zero_fraction"],
    "Report": ["seconds", "total_energy_pj"],
    "TensorSpec": ["is_dense"],
}
FIELDS = {
    "Report": [
        "kernel",
        "cycles",
        "ideal_cycles",
        "mac_utilization",
        "macs",
        "dense_macs",
        "queues",
        "dram_bytes",
        "sram_bytes",
        "energy_pj",
    ],  # fmt: skip
    "KernelABI": ["name", "params", "results", "symbols", "row_split", "column_split"],
    "TensorSpec": ["name", "dtype", "dims", "layout", "buffers"],
    "BufferSpec": ["role", "dtype", "shape", "kind"],
    "RowSplit": ["symbol", "granule", "work"],
    "ColumnSplit": ["symbol", "granule", "work"],
    "PackedTensor": ["layout", "shape", "arrays", "input_scale", "dtype"],
    "MachineProgram": ["name", "segments", "instrs"],
}
INTERNAL_IN_DOCS = {
    "docs/formats.md": {"stoicc_py.packing.quant"},  # the packer's numpy model, marked internal there
    "docs/adding-a-pass.md": {"stoicc_py.dialects"},  # a contributor guide: passes are internal
}


def _public(name: str) -> object:
    owner, _, member = name.partition(".")
    obj = getattr(stoicc_py, owner)
    return inspect.getattr_static(obj, member) if member else obj


def _function(obj: object) -> object:
    return obj.__func__ if isinstance(obj, staticmethod | classmethod) else obj


def test_all_names_the_public_api() -> None:
    assert set(stoicc_py.__all__) == PUBLIC
    assert set(stoicc_py.__all__) <= set(dir(stoicc_py))
    with pytest.raises(AttributeError):
        stoicc_py.api_that_does_not_exist  # noqa: B018


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature(name: str) -> None:
    fn = _function(_public(name))
    assert callable(fn) and inspect.getdoc(fn), f"{name} has no docstring"
    assert list(inspect.signature(fn).parameters) == SIGNATURES[name]  # type: ignore[arg-type]


def test_properties_and_fields() -> None:
    for cls, names in PROPERTIES.items():
        for name in names:
            assert isinstance(_public(f"{cls}.{name}"), property), f"{cls}.{name}"
    for cls, names in FIELDS.items():
        fields = getattr(stoicc_py, cls).__dataclass_fields__
        assert set(names) <= set(fields), f"{cls} lost {set(names) - set(fields)}"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_member_has_a_docstring(name: str) -> None:
    obj = getattr(stoicc_py, name)
    assert inspect.getdoc(obj), name
    if not inspect.isclass(obj):
        return
    for member, value in inspect.getmembers(obj):
        if (member.startswith("_") and member != "__call__") or not (
            callable(value) or isinstance(inspect.getattr_static(obj, member), property)
        ):
            continue
        assert inspect.getdoc(value), f"{name}.{member} has no docstring"


def test_docs_api_names_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in sorted(PUBLIC) if f"`{name}" not in text and f"stoicc_py.{name}" not in text]
    assert not missing, f"docs/api.md does not document {missing}"


@pytest.mark.parametrize("doc", ["README.md", *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("docs/*.md")))])
def test_examples_use_only_public_names(doc: str) -> None:
    """Python blocks name only stoicc_py.NAME for a public NAME, stoicc_py.torch, or an
    internal module that the page marks as such."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    used = {m for block in blocks for m in re.findall(r"stoicc_py(?:\.\w+)+", block)}
    allowed = {f"stoicc_py.{n}" for n in PUBLIC} | {"stoicc_py.torch", "stoicc_py.models"} | INTERNAL_IN_DOCS.get(doc, set())
    assert not used - allowed, f"{doc} uses private names {sorted(used - allowed)}"


def test_import_loads_nothing_until_a_name_is_used() -> None:
    code = "import sys, stoicc_py; print(sorted(m for m in sys.modules if m.startswith(('stoicc_py.', 'xdsl', 'llvmlite'))))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "[]"


def test_the_torch_module_without_torch_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    monkeypatch.delitem(sys.modules, "stoicc_py.torch", raising=False)
    with pytest.raises(ImportError, match=r"stoicc_py.torch needs PyTorch \(pip install torch\)"):
        importlib.import_module("stoicc_py.torch")
