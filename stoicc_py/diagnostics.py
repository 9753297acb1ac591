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
    def at_offset(file: str, text: str, offset: int) -> SourceLoc:
        """The line and column of character `offset` of `text`."""
        line_start = text.rfind("\n", 0, offset) + 1
        return SourceLoc(file, text.count("\n", 0, offset) + 1, offset - line_start + 1)

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
            line, col = _excerpt(lines[self.loc.line - 1], self.loc.col)
            text += f"\n{line}\n{' ' * (col - 1)}^"
        return text


def _excerpt(line: str, col: int, width: int = 120) -> tuple[str, int]:
    """At most `width` characters of `line` around column `col` (a line of a
    generated or minified source may be megabytes long), and the column in them."""
    if len(line) <= width:
        return line, col
    start = min(max(col - 1 - width // 2, 0), len(line) - width)
    head, tail = ("..." if start > 0 else ""), ("..." if start + width < len(line) else "")
    return head + line[start : start + width] + tail, col - start + len(head)


def op_error(op: Operation, message: str) -> CompileError:
    """An error about `op`, located where its source was written."""
    return CompileError(message, SourceLoc.from_attr(op.location))
