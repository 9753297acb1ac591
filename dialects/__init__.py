"""stoicc_py's dialects, registered by name with lazy factories."""

from collections.abc import Callable

from xdsl.ir import Dialect


def _accel() -> Dialect:
    from stoicc_py.dialects.accel import Accel

    return Accel


def _layout() -> Dialect:
    from stoicc_py.dialects.layout import Layout

    return Layout


def _sparse() -> Dialect:
    from stoicc_py.dialects.sparse import Sparse

    return Sparse


def _quant() -> Dialect:
    from stoicc_py.dialects.quant import Quant

    return Quant


def _tdsl() -> Dialect:
    from stoicc_py.dialects.tdsl import Tdsl

    return Tdsl


DIALECTS: dict[str, Callable[[], Dialect]] = {
    "accel": _accel,
    "layout": _layout,
    "sparse": _sparse,
    "quant": _quant,
    "tdsl": _tdsl,
}
