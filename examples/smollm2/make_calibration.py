"""calibration_generated.npy: calibration text that SmolLM2-135M writes itself (the data-free
calibration of LLM-QAT, Liu et al. 2023): SEQUENCES sequences of LENGTH tokens sampled at
temperature 1 from the float32 model, each starting with one English word (STARTS, in turn),
all decoded at once (stoicc_py.models.llama_model.sample), seeded. int32 [SEQUENCES, 1 + LENGTH]:
each row a calibration window, its start word first. compress.py --calibration reads it.

    python examples/smollm2/make_calibration.py          # 10 min on the shared 2-core host; 66 KB
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Decoding multiplies 64 rows at a time: one BLAS thread is ~10x faster than two on this
# shared host (their synchronisation dominates such small products). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from stoicc_py.models.gguf_llama import gguf_tokenizer, load_gguf  # noqa: E402
from stoicc_py.models.llama_model import NumpyLlama, sample  # noqa: E402
from stoicc_py.models.smollm2 import smollm2_gguf_path  # noqa: E402

HERE = Path(__file__).resolve().parent
STARTS = ("The In A When After One Many Most It This There We Our My Your If Although During Some Every "
          "Scientists History Water People Music Children Language Today Students Women").split()  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--length", type=int, default=256, help="tokens sampled after each start word")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=HERE / "calibration_generated.npy")
    args = parser.parse_args(argv)

    path = smollm2_gguf_path()
    tok = gguf_tokenizer(path)
    words = [tok.encode(w).ids for w in STARTS]
    assert all(len(ids) == 1 for ids in words), "each start word is one token"
    starts = np.array([words[i % len(words)] for i in range(args.sequences)])
    start = time.perf_counter()
    drawn = sample(NumpyLlama(load_gguf(path)), starts, args.length, np.random.default_rng(args.seed))
    ids = np.concatenate([starts, drawn], axis=1).astype(np.int32)
    np.save(args.output, ids)
    print(f"{ids.size:,} tokens in {time.perf_counter() - start:.0f} s -> {args.output.name}; e.g.")
    print(tok.decode(list(ids[0, :80])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
