"""What every `stoicc` subcommand shares on its command line (cli.py, benchmarks/suite.py).

- `Parser`: a usage error is one line, `stoicc: error: argument --NAME: ...`, status 2.
- The argparse types of option values: argparse prefixes their messages with the
  option (`argument --seed: expected a non-negative integer, got '-1'`).
- `output_file`: a file the command writes, checked when the command line is parsed,
  before any work, so a long run cannot end in an unwritable path.
- `write_json`: results written atomically, so that a file written after each
  measurement always holds valid JSON of what was measured so far.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

ERROR = "stoicc: error: "
"""How every error that is not located in a source file starts (a located one is `FILE:LINE:COL: error: ...`)."""

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors have the prefix of every other error (sub-parsers
    made by add_parser are of the same class)."""

    def error(self, message: str) -> NoReturn:
        usage_error(self, message)


def usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """Exit with status 2 and one line naming the parser's --help (argparse's own error()
    prints the usage, then `PROG: error:`)."""
    parser.exit(2, f"{ERROR}{message} (see '{parser.prog} --help')\n")


def integer(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (None: no bound)."""
    if high is not None:
        want = f"an integer from {low} to {high}"
    else:
        want = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer of at least {low}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


BYTE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}


def byte_size(text: str) -> int:
    """An argparse type: a number of bytes, with an optional unit (60MB, 57.5MiB, 1e8)."""
    number = text.rstrip("BbKkMmGgIi")
    unit = text[len(number) :].upper()
    try:
        value = float(number) * BYTE_UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size in bytes (e.g. 60MB, 57.5MiB), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive size in bytes, got {text!r}")
    return int(value)


def assignment(value: Callable[[str], T], form: str) -> Callable[[str], tuple[str, T]]:
    """An argparse type: NAME=VALUE (`form` shows it, e.g. NAME=SIZE), VALUE parsed by `value`."""

    def parse(text: str) -> tuple[str, T]:
        name, equals, rest = text.partition("=")
        if not name or not equals or not rest:
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}")
        try:
            return name, value(rest)
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"in {text!r}: {err}") from None

    return parse


def output_file(text: str) -> str:
    """An argparse type: a file the command will write. Checked now, before any work; a path
    that cannot be written is an OSError (like one that cannot be read: status 1), which
    argparse lets through (it turns only ValueError and TypeError into usage errors)."""
    path = Path(text)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "cannot write: it is a directory", text)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"cannot write: no directory {str(path.parent)!r}", text)
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(errno.EACCES, "cannot write: permission denied", text)
    return text


def write_json(path: str | Path, data: Any) -> None:
    """`data` as JSON in `path`, replaced whole: a temporary file in the same directory renamed
    over it (os.replace is atomic), so that an interrupted run never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # open(), unlike mkstemp, honours the umask
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
