"""Which devices take part in each collective of a compiled XLA program (its HLO text).

`collectives(hlo)` -> [(op, groups)], e.g. ("all-reduce", [[0, 2, 4, 6], [1, 3, 5, 7]]): device
groups as positions in the program's device assignment (for a jit over a Mesh: positions in
`mesh.devices.flat`). Reads the group notations XLA prints:
    replica_groups={{0,1},{2,3}}                       explicit (`{}`: every device)
    replica_groups=[4,2]<=[2,2,2]T(1,0,2)              iota: arange, reshape, transpose, reshape
    replica_groups=mesh['axis_0'=4,'axis_1'=2], device_ids=([2,4]T(1,0)) {'axis_1'}
                                                       one group per point of the other axes
    source_target_pairs={{0,1},{1,0}}                  collective-permute: each pair a group
"""

from __future__ import annotations

import re

import numpy as np

_OP = re.compile(
    r"^\s*(?:ROOT )?%\S+ = .*?\s"
    r"(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(?:-start)?\("
)
_IOTA = r"\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?"
_MESH = (
    r"replica_groups=mesh\[([^\]]*)\]"
    r"(?:, device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\))? \{([^}]*)\}"
)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _iota(dims: str, perm: str | None) -> np.ndarray:
    ids = np.arange(np.prod(_ints(dims))).reshape(_ints(dims))
    return ids.transpose(_ints(perm)) if perm else ids


def groups(line: str, num_devices: int) -> list[list[int]]:
    """The device groups of one collective instruction line."""
    if m := re.search(_MESH, line):
        axes = [item.split("=") for item in m.group(1).split(",")]
        names = [name.strip("'") for name, _ in axes]
        shape = [int(size) for _, size in axes]
        ids = _iota(m.group(2), m.group(3)) if m.group(2) else np.arange(np.prod(shape))
        ids = ids.reshape(shape)
        over = [names.index(a.strip().strip("'")) for a in m.group(4).split(",")]
        rest = [i for i in range(len(shape)) if i not in over]
        size = int(np.prod([shape[i] for i in over]))
        return ids.transpose(rest + over).reshape(-1, size).tolist()
    if m := re.search(r"replica_groups=" + _IOTA, line):
        return _iota(m.group(2), m.group(3)).reshape(_ints(m.group(1))).tolist()
    if m := re.search(r"replica_groups=\{((?:\{[\d,]*\},?)*)\}", line):
        found = [_ints(g) for g in re.findall(r"\{([\d,]*)\}", m.group(1))]
        return found or [list(range(num_devices))]
    if m := re.search(r"source_target_pairs=\{((?:\{\d+,\d+\},?)*)\}", line):
        return [[int(a), int(b)] for a, b in re.findall(r"\{(\d+),(\d+)\}", m.group(1))]
    raise ValueError(f"no device groups found in: {line[:300]}")


def collectives(hlo: str, num_devices: int) -> list[tuple[str, list[list[int]], str]]:
    """(op, device groups, the instruction line) for every collective in the HLO text."""
    out = []
    for line in hlo.splitlines():
        if m := _OP.search(line):
            out.append((m.group(1), groups(line, num_devices), line.strip()))
    return out


_ITEMSIZE = {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1, "pred": 1}


def result_bytes(line: str) -> int:
    """Bytes of an instruction's result on one device, e.g. `%x = (f32[2,8]{1,0}, f32[]) ...`
    -> 68 (a tuple: the sum of its parts)."""
    result = re.match(r"^\s*(?:ROOT )?%\S+ = (.*?)\s[a-z-]+\(", line).group(1)
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", result):
        total += _ITEMSIZE[dtype] * int(np.prod(_ints(dims)))
    return total


def bytes_per_execution(hlo: str, lines: list[str]) -> int:
    """Bytes that one execution of `hlo` sends through the collective instruction `lines` (from
    `collectives`): a conditional runs one of its branches, so the collectives of its branch
    computations are alternatives (the largest branch counts), not a sum. A collective nested
    deeper than a branch's own computation counts as always executed (an overcount, never less)."""
    where, computation = {}, None
    for raw in hlo.splitlines():
        if raw.rstrip().endswith("{") and (m := re.match(r"^(?:ENTRY )?%(\S+) ", raw)):
            computation = m.group(1)
        where[raw.strip()] = computation
    conditionals = [
        re.findall(r"%([^,\s}]+)", names)
        for names in re.findall(r"branch_computations=\{([^}]*)\}", hlo)
    ] + [
        list(pair)
        for pair in re.findall(r"true_computation=%([^,\s]+), false_computation=%([^,\s]+)", hlo)
    ]
    per_computation: dict[str, int] = {}
    for line in lines:
        per_computation[where[line]] = per_computation.get(where[line], 0) + result_bytes(line)
    in_branch = {name for branches in conditionals for name in branches}
    always = sum(n for name, n in per_computation.items() if name not in in_branch)
    return always + sum(
        max(per_computation.get(name, 0) for name in branches) for branches in conditionals
    )
