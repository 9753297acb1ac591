"""The GPU target: NVIDIA tensor-core kernels as LLVM IR (`kernel.py`), PTX from
llvmlite's NVPTX backend (`target.py`), and their loading and launching through the
CUDA driver API (`driver.py`, the optional `gpu` extra: cuda-python). docs/gpu.md."""
