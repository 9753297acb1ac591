"""The on-disk kernel cache: compiled object files plus kernel ABIs, one file per key.

Entries are written atomically (a temporary file in the same directory, then
os.replace), so that concurrent compiles from several processes never expose a
partial entry: each reader sees a whole file, from one writer or another. Entries
are checked on read (magic, lengths, one SHA-256 over the ABIs and the code); a
corrupt, truncated or garbage entry is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from itertools import accumulate, pairwise
from pathlib import Path

from stoicc_py.abi import KernelABI

log = logging.getLogger(__name__)
_MAGIC = b"STOICC-KERNELS-3\n"
_HEADER = struct.Struct("<QQ32s")  # metadata length, objects' length, SHA-256 of metadata + objects


def cache_key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class KernelCache:
    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.kernels"

    def get(self, key: str) -> tuple[list[bytes], list[KernelABI]] | None:
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        try:
            return self._decode(data)
        except (ValueError, KeyError, TypeError, AttributeError, AssertionError, struct.error) as err:
            log.warning("ignoring corrupt cache entry %s: %s", self._path(key), err)
            return None

    @staticmethod
    def _decode(data: bytes) -> tuple[list[bytes], list[KernelABI]]:
        if not data.startswith(_MAGIC):
            raise ValueError("bad magic")
        offset = len(_MAGIC)
        meta_len, obj_len, digest = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        if len(data) != offset + meta_len + obj_len:
            raise ValueError("truncated")
        if hashlib.sha256(data[offset:]).digest() != digest:
            raise ValueError("checksum mismatch")
        meta = json.loads(data[offset : offset + meta_len])
        ends = list(accumulate(meta["objects"], initial=offset + meta_len))
        if ends[-1] != len(data):
            raise ValueError("object lengths do not add up")
        return [data[a:b] for a, b in pairwise(ends)], [KernelABI.from_json(k) for k in meta["kernels"]]

    def put(self, key: str, objects: list[bytes], abis: list[KernelABI]) -> None:
        obj = b"".join(objects)
        meta = json.dumps({"kernels": [a.to_json() for a in abis], "objects": [len(o) for o in objects]}).encode()
        header = _HEADER.pack(len(meta), len(obj), hashlib.sha256(meta + obj).digest())
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + header + meta + obj)
            os.replace(tmp, self._path(key))
        except OSError as err:  # a read-only or full disk costs a recompile, not a failure
            log.warning("could not write kernel cache %s: %s", self.directory, err)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
