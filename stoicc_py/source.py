"""Source text: a .tdsl file or string, decoded as UTF-8 with a located error where it is not."""

from __future__ import annotations

import os
from pathlib import Path


def read_source(source_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """(source text, file name for diagnostics); a str is a path if it names a file."""
    if isinstance(source_or_path, os.PathLike) or ("\n" not in source_or_path and source_or_path.endswith(".tdsl")):
        path = Path(source_or_path)
        try:
            data = path.read_bytes()
        except OSError as err:
            from stoicc_py.diagnostics import CompileError  # an xDSL exception: loaded when there is an error

            raise CompileError(f"cannot read {path}: {err.strerror}") from None
        return decode_source(data, str(path)), str(path)
    return str(source_or_path), "<string>"


def decode_source(data: bytes, file: str) -> str:
    """UTF-8 source text; a byte that is not is a located error."""
    try:
        return data.decode()
    except UnicodeDecodeError as err:
        from stoicc_py.diagnostics import CompileError, SourceLoc

        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise CompileError(
            f"the source is not UTF-8 text (byte 0x{data[err.start]:02x})", SourceLoc(file, line, col)
        ) from None
