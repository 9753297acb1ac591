"""Makes stoicc_py's dialects and passes visible to xDSL tools (xdsl-opt, stoicc opt)."""

from xdsl.universe import Universe

from stoicc_py.dialects import DIALECTS
from stoicc_py.passes import PASSES

STOICC_UNIVERSE = Universe(all_dialects=DIALECTS, all_passes=PASSES)
