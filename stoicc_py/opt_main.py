"""`stoicc opt`: xdsl-opt with stoicc's dialects and passes, and .tdsl files as input (the
lit suite's driver: it loads the dialects and passes, not the LLVM backend or the runtime)."""

from __future__ import annotations

import argparse
import io
from typing import IO

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.target import Target
from xdsl.xdsl_opt_main import xDSLOptMain

from stoicc_py.cmdline import usage_error
from stoicc_py.pipeline import all_passes, context
from stoicc_py.source import decode_source
from stoicc_py.version import __version__


class OptMain(xDSLOptMain):
    """xdsl-opt with stoicc's dialects and passes, and .tdsl files as input."""

    version_format = f"stoicc opt {__version__} (xDSL {{xdsl_version}})"

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        # xDSLOptMain makes a plain ArgumentParser: give it our name and our usage errors
        arg_parser.prog = "stoicc opt"
        arg_parser.error = lambda message: usage_error(arg_parser, message)  # type: ignore[method-assign]

    def prepare_input(self) -> tuple[list[tuple[IO[bytes], int]], str]:
        """The input's chunks, once the whole input is known to be UTF-8 (else a located error)."""
        chunks, extension = super().prepare_input()
        data = []
        for chunk, _ in chunks:
            data.append(chunk.read())
            chunk.close()
        decode_source(b"// -----".join(data), self.get_input_name())  # the chunks were split at "// -----"
        return [(io.BytesIO(d), offset) for d, (_, offset) in zip(data, chunks)], extension

    def register_all_dialects(self) -> None:
        self.ctx = context()

    def register_all_passes(self) -> None:
        for name, factory in all_passes().items():
            self.register_pass(name, factory)

    def register_all_targets(self) -> None:
        def llvm() -> type[Target]:  # the LLVM backend loads only for `-t llvm`
            from stoicc_py.backends.llvm.translate import LLVMTarget

            return LLVMTarget

        self.available_targets["llvm"] = llvm
        super().register_all_targets()

    def register_all_frontends(self) -> None:
        super().register_all_frontends()

        def parse_tdsl(stream: IO[bytes]) -> ModuleOp:
            from stoicc_py.lowering import front_end

            return front_end(stream.read().decode(), self.get_input_name())  # UTF-8: prepare_input

        self.available_frontends["tdsl"] = parse_tdsl
