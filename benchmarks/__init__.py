"""Benchmarks: the CPU suite (`python -m benchmarks` or `stoicc bench`, entry point
`suite.main`; see README.md) and accel_formats.py (the accelerator comparison, a
script of its own).

Installed as `stoicc_py.benchmarks`; its modules import each other relatively.
"""
