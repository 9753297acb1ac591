"""`python -m benchmarks [options]`: the same as `stoicc bench [options]`."""

import sys

from stoicc_py.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
