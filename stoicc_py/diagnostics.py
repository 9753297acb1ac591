"""Located compiler errors: `FILE:LINE:COL: error: message`, the source line, a caret."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
from xdsl.ir import Attribute, Operation
from xdsl.utils.exceptions import DiagnosticException


@dataclass(frozen=True)
class SourceLoc:
    file: str
    line: int
    col: int

    def attr(self) -> FileLineColLoc:
        return FileLineColLoc(StringAttr(self.file), IntAttr(self.line), IntAttr(self.col))

    @staticmethod
    def from_attr(attr: Attribute) -> SourceLoc | None:
        if isinstance(attr, FileLineColLoc):
            return SourceLoc(attr.filename.data, attr.line.data, attr.column.data)
        return None


class StoiccWarning(UserWarning):
    """Something stoicc did that the caller did not ask for and may not expect: a weight
    packed again on every call, a prune that prunes nothing (docs/api.md, "Warnings")."""


def warn(message: str) -> None:
    """Warn with a StoiccWarning, attributed to the first caller outside stoicc_py."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("stoicc_py"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, StoiccWarning, stacklevel=level)


class CompileError(DiagnosticException):
    """An error in the user's program, with the place it was found: `message`, `loc` (a
    SourceLoc: file, line, col; None if unlocated). `str()` is `FILE:LINE:COL: error: ...`
    with the source line and a caret."""

    def __init__(self, message: str, loc: SourceLoc | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.source = source

    def with_source(self, source: str) -> CompileError:
        """This error, showing the offending line of `source` unless it has its source already."""
        if self.source is None:
            self.source = source
        return self

    def __str__(self) -> str:
        if self.loc is None:
            return f"error: {self.message}"
        text = f"{self.loc.file}:{self.loc.line}:{self.loc.col}: error: {self.message}"
        lines = (self.source or "").splitlines()
        if 0 < self.loc.line <= len(lines):
            line = lines[self.loc.line - 1]
            text += f"\n{line}\n{' ' * (self.loc.col - 1)}^"
        return text


def op_error(op: Operation, message: str) -> CompileError:
    """An error about `op`, located where its source was written."""
    return CompileError(message, SourceLoc.from_attr(op.location))
