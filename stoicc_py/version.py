"""The compiler's version (pyproject.toml's), without importing the package's API: the
kernel cache keys on it."""

__version__ = "0.1.0"
