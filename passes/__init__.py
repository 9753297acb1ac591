"""The compiler's passes, one per module, registered by their kebab-case name.

Each entry maps a pass name to a factory that imports the pass lazily, as xDSL's
own registry does, so that loading the registry costs nothing.
"""

from collections.abc import Callable

from xdsl.passes import ModulePass


def _convert_arith_to_llvm() -> type[ModulePass]:
    from stoicc_py.passes.convert_arith_to_llvm import ConvertArithToLLVM

    return ConvertArithToLLVM


def _convert_math_to_llvm() -> type[ModulePass]:
    from stoicc_py.passes.convert_math_to_llvm import ConvertMathToLLVM

    return ConvertMathToLLVM


def _convert_func_to_llvm() -> type[ModulePass]:
    from stoicc_py.passes.convert_func_to_llvm import ConvertFuncToLLVM

    return ConvertFuncToLLVM


def _convert_cf_to_llvm() -> type[ModulePass]:
    from stoicc_py.passes.convert_cf_to_llvm import ConvertCfToLLVM

    return ConvertCfToLLVM


def _convert_ptradd_to_gep() -> type[ModulePass]:
    from stoicc_py.passes.convert_ptradd_to_gep import ConvertPtrAddToGEP

    return ConvertPtrAddToGEP


def _lower_alloc() -> type[ModulePass]:
    from stoicc_py.passes.lower_alloc import LowerAlloc

    return LowerAlloc


PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "convert-arith-to-llvm": _convert_arith_to_llvm,
    "convert-math-to-llvm": _convert_math_to_llvm,
    "convert-func-to-llvm": _convert_func_to_llvm,
    "convert-cf-to-llvm": _convert_cf_to_llvm,
    "convert-ptradd-to-gep": _convert_ptradd_to_gep,
    "lower-alloc": _lower_alloc,
}
