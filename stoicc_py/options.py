"""The options a program is compiled with (stoicc_py.compile's target, tile and
check_bounds; the CLI's --mcpu and --mattr): read by the compile path (lowering,
accel) and part of the cache key."""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("cpu", "accel", "gpu")


@dataclass(frozen=True)
class Options:
    target: str = "cpu"
    tile: tuple[int, ...] = ()
    check_bounds: bool = False
    cpu: str = ""  # LLVM's CPU name; "" is the host
    mattr: str = ""  # features added or removed, as `+avx2,-avx512f`

    def key(self) -> str:
        return (f"target={self.target};tile={self.tile};check_bounds={self.check_bounds};"
                f"cpu={self.cpu};mattr={self.mattr}")  # fmt: skip
