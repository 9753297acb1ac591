"""Any identifier the language accepts is a valid kernel, parameter or size symbol name.

Names are drawn from C and C++ keywords, libc and libm functions (the ones the
generated code calls among them), the types and macros of the headers a C driver
includes, and the names the compiler makes itself (a packed parameter's buffers
`w_values`, results `out0`, size symbols, `bounds_status`, the `stoicc_` prefix).
Each program runs in process against the reference, its object (`stoicc compile
--emit obj`'s, which needs no thread pool) links into a C driver, and its `--emit header` compiles as C11 and C++17 after the standard
headers (docs/api.md, C ABI). Derandomized in CI like tests/test_fuzz.py.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import example, given
from hypothesis import strategies as st
from tdsl_strategies import fuzz_settings

import stoicc_py
from stoicc_py.cli import main
from stoicc_py.lowering import object_code

C_KEYWORDS = """auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict short signed sizeof static struct switch typedef union unsigned void volatile while
_Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local bool true false
nullptr alignas alignof static_assert thread_local typeof constexpr""".split()  # `return` is the language's too
CPP_KEYWORDS = """class namespace template typename this new delete operator virtual public private protected friend
explicit mutable try catch throw using and or not xor bitand bitor compl and_eq or_eq not_eq xor_eq export concept
requires consteval constinit decltype noexcept char8_t char16_t char32_t wchar_t co_await co_yield co_return asm
final override""".split()
LIBC_NAMES = """expf exp tanhf tanh erff erf sqrtf sqrt logf powf fabsf fmaf sinf cosf expm1f aligned_alloc free malloc
calloc realloc memcpy memset memmove strlen abort exit printf puts main errno stdin stdout NULL EOF assert
size_t int8_t int32_t int64_t uint8_t uint16_t INT64_MAX INT8_C _Float16 __restrict I""".split()
GENERATED = """out0 out1 M N K x_values w_values w_indices w_scales w_values_len0 bounds_status arg0 tmp t0
stoicc_expf stoicc_ stoicc_int STOICC_KERNELS_H STOICC_NAMES_H llvm exp linear dense nm""".split()
NAMES = st.sampled_from(C_KEYWORDS + CPP_KEYWORDS + LIBC_NAMES + GENERATED)
DISTINCT_PAIR = st.lists(NAMES, min_size=2, max_size=2, unique=True)  # two parameters
C_COMPILERS = {"cc": ["-std=c11"], "c++": ["-std=c++17", "-x", "c++"]}
C_PRELUDE = "#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <stdbool.h>\n"
CPP_PRELUDE = "#include <cmath>\n#include <cstdio>\n#include <cstdlib>\n#include <cstring>\n"


def check_header(header: Path) -> None:
    """The header compiles, twice included after the standard headers, with every
    C compiler present as C11 and C++17, warnings as errors."""
    compilers = [c for c in C_COMPILERS if shutil.which(c)]
    if not compilers:
        pytest.skip("no C or C++ compiler")
    for compiler in compilers:
        prelude = CPP_PRELUDE if compiler == "c++" else C_PRELUDE
        unit = header.with_name(f"{compiler}_unit.c")
        unit.write_text(f'{prelude}#include "{header.name}"\n#include "{header.name}"\n')
        flags = ["-fsyntax-only", "-Wall", "-Wextra", "-pedantic", "-Werror", *C_COMPILERS[compiler]]
        run = subprocess.run([compiler, *flags, str(unit)], capture_output=True, text=True)
        assert run.returncode == 0, f"{compiler} rejects the header:\n{header.read_text()}\n{run.stderr}"


@st.composite
def packed_kernels(draw: st.DrawFn) -> str:
    """A kernel with a packed weight, its buffers' names also taken by a parameter."""
    kernel, symbol, (x, w) = draw(NAMES), draw(NAMES), draw(DISTINCT_PAIR)
    v = draw(st.one_of(NAMES, st.sampled_from(["_values", "_indices", "_scales", "_values_len0"]).map(w.__add__)))
    layout = draw(st.sampled_from(["nm(2, 4)", "csr", "int4(group=8)", "dense"]))
    if v in (x, w):
        v = f"{v}_"
    return (f"kernel {kernel}({x}: f32[{symbol}, 16], {w}: f32[8, 16] @ {layout}, {v}: f32[8]) -> f32[{symbol}, 8] {{\n"
            f"  return linear({x}, {w}) + {v}\n}}\n")  # fmt: skip


@fuzz_settings(ci_examples=12)
@given(source=packed_kernels(), stem=st.one_of(NAMES, st.sampled_from(["1-names", "a.b", "my kernels"])),
       check_bounds=st.booleans())  # fmt: skip
@example(source="kernel int(float: f32[M, 16], M: f32[8, 16] @ nm(2, 4), restrict: f32[8]) -> f32[M, 8] {\n"
         "  return linear(float, M) + restrict\n}\n", stem="int", check_bounds=False)  # fmt: skip
@example(source="kernel k(w: f32[M, 16], out0: f32[8, 16] @ csr, out0_values: f32[8]) -> f32[M, 8] {\n"
         "  return linear(w, out0) + out0_values\n}\n", stem="1-names", check_bounds=True)  # fmt: skip
def test_any_names_make_a_header_that_c_and_cpp_accept(
    source: str, stem: str, check_bounds: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("header")
    path, header = directory / f"{stem}.tdsl", directory / "kernels.h"
    path.write_text(source)
    with redirect_stdout(io.StringIO()):
        status = main(["compile", str(path), "--emit", "header", "-o", str(header)] + ["--check-bounds"] * check_bounds)
    assert status == 0, source
    check_header(header)


MATH_KERNEL = """kernel {k}({x}: f32[{s}, 16], {b}: f32[16]) -> f32[{s}, 16] {{
  {t} = {x} + {b}
  return tanh({t}) + exp(neg(abs({t}))) + gelu({t}) + sqrt(abs({t}))
}}
"""
DRIVER = """{prelude}#include "kernels.h"
int main(void) {{
    float x[{m} * 16], b[16], out[{m} * 16];
    for (int i = 0; i < {m} * 16; i++) x[i] = (float)(i % 23) / 7.0f - 1.5f;
    for (int i = 0; i < 16; i++) b[i] = (float)(i % 5) / 4.0f - 0.5f;
{calls}    return 0;
}}
"""
CALL = '    stoicc_{}(x, b, out, {m});\n    for (int i = 0; i < {m} * 16; i++) printf("%.9g\\n", (double)out[i]);\n'


@st.composite
def math_programs(draw: st.DrawFn) -> str:
    """Kernels named like libm functions and keywords, calling exp, tanh, erf (gelu), sqrt."""
    kernels = draw(st.lists(NAMES, min_size=1, max_size=2, unique=True))
    texts = []
    for k in kernels:
        x, b = draw(DISTINCT_PAIR)
        s, t = draw(NAMES), draw(NAMES)
        texts.append(MATH_KERNEL.format(k=k, x=x, b=b, s=s, t=t))
    return "".join(texts)


def run_c_driver(prog: stoicc_py.Program, objects: list[bytes], directory: Path, m: int) -> np.ndarray:
    """The objects linked into a C driver that calls every kernel: their outputs."""
    names = [f"kernels{i}.o" for i in range(len(objects))]
    for name, obj in zip(names, objects, strict=True):
        (directory / name).write_bytes(obj)
    (directory / "kernels.h").write_text(prog.header())
    calls = "".join(CALL.format(name, m=m) for name in prog.kernels)
    (directory / "main.c").write_text(DRIVER.format(prelude=C_PRELUDE, m=m, calls=calls))
    subprocess.run(["cc", "-std=c11", "-o", "main", "main.c", *names, "-lm"], cwd=directory, check=True)
    printed = subprocess.run(["./main"], cwd=directory, check=True, capture_output=True, text=True).stdout
    return np.array([float(v) for v in printed.split()], dtype=np.float32).reshape(len(prog.kernels), m, 16)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@fuzz_settings(ci_examples=2)
@given(source=math_programs())
@example(source="".join(MATH_KERNEL.format(k=k, x="x", b="b", s="M", t="t")
                        for k in ["expf", "tanhf", "erff", "aligned_alloc", "free"]))  # fmt: skip
def test_any_names_compile_run_and_link(
    source: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """In process (the JIT resolves libm beside the kernels) and linked from C: both
    agree with the reference; a kernel named expf once answered its own calls to expf."""
    m = 3
    x = (np.arange(m * 16) % 23 / np.float32(7) - np.float32(1.5)).astype(np.float32).reshape(m, 16)
    b = (np.arange(16) % 5 / np.float32(4) - np.float32(0.5)).astype(np.float32)
    prog = stoicc_py.compile(source)
    for name in prog.kernels:
        assert_close(prog.kernel(name)(x, b), prog.kernel(name).reference(x, b))
    directory = tmp_path_factory.mktemp("aot")
    outputs = run_c_driver(prog, [object_code(prog.module, prog.options)], directory, m)
    for got, name in zip(outputs, prog.kernels, strict=True):
        assert_close(got, prog.kernel(name).reference(x, b))
    check_header(directory / "kernels.h")
