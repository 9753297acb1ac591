"""Reads the SASS that ptxas makes of a wgmma.sp kernel (`cuobjdump -sass`): the check that
no instruction overwrites a metadata register while the HGMMA.SP reading it may still run.

wgmma.sp reads its metadata register after it issues, until the `wgmma.wait_group` that
retires its group; ptxas does not keep the register for it (the staged kernel's first
wgmma.sp loop loaded the next k-tile's words into the running group's registers, which gave
wrong sums on the H100; docs/gpu.md, "wgmma.sp"). The scan follows the listing in order and
once more around a backward branch (the k-loop), with the groups a `WARPGROUP.DEPBAR.LE gsb0,
N` leaves running: a group ends at the HGMMA that carries `gsb0`.
"""

from __future__ import annotations

import re

_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BRANCH = re.compile(r"BRA (0x[0-9a-f]+)")
_DEPBAR = re.compile(r"WARPGROUP\.DEPBAR\.LE gsb0, (0x[0-9a-f]+)")
_SPARSE = re.compile(r"HGMMA\.SP\S* R\d+, gdesc\[\w+\], R\d+, (R\d+),")
_PREDICATE = re.compile(r"^@!?U?P\w+ ")
_DESTINATION = re.compile(r"^([A-Z][A-Z0-9_.]*) (R\d+)\b")


def _written(opcode: str, first: str) -> set[str]:
    """The registers an instruction writes from its first operand (a wide one writes 2 or 4)."""
    if opcode.startswith(("ST", "RED", "ATOM", "HGMMA", "LDGSTS", "BAR", "BRA", "ISETP", "FSETP")):
        return set()
    width = 4 if ".128" in opcode else 2 if ".64" in opcode or ".WIDE" in opcode else 1
    base = int(first[1:])
    return {f"R{base + i}" for i in range(width)}


def metadata_hazards(sass: str) -> list[str]:
    """Each instruction that writes a register an HGMMA.SP of a running group reads as its
    metadata ("address: instruction"); empty where none does."""
    listing = [(int(at, 16), text) for at, text in _INSTRUCTION.findall(sass)]
    back = next(((i, int(m.group(1), 16)) for i, (at, text) in enumerate(listing)
                 if (m := _BRANCH.search(text)) and int(m.group(1), 16) < at), None)  # fmt: skip
    order = listing
    if back is not None:  # the loop's body once more, as the next iteration meets it
        end, target = back
        head = next(i for i, (at, _) in enumerate(listing) if at >= target)
        order = listing[: end + 1] + listing[head : end + 1] + listing[end + 1 :]
    running: list[set[str]] = []  # committed groups, oldest first
    open_group: set[str] = set()
    found: list[str] = []
    for at, text in order:
        text = _PREDICATE.sub("", text)
        if sparse := _SPARSE.search(text):
            open_group.add(sparse.group(1))
        if text.startswith("HGMMA") and "gsb0" in text:
            running.append(open_group)
            open_group = set()
            continue
        if depbar := _DEPBAR.search(text):
            keep = int(depbar.group(1), 16)
            running = running[len(running) - keep :] if keep else []
            continue
        destination = _DESTINATION.match(text)
        if destination and _written(*destination.groups()) & set().union(open_group, *running):
            entry = f"{at:04x}: {text}"
            if entry not in found:
                found.append(entry)
    return found
