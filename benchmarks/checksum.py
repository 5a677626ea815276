"""Internet checksum: pure-Python candidates side by side.

Run: ``.venv/bin/python benchmarks/checksum.py [--quick]``

Every candidate computes the folded 16-bit one's-complement sum of the same buffers in the
same run (the machine is shared, so only the ratios are meaningful). Each is first checked
against the naive reference on random data, edge cases included. The second table tunes
``tunflow.packet._FOLD_BITS`` (fold the big integer in halves before the ``% 0xFFFF``).
"""

from __future__ import annotations

import argparse
import array
import os
import struct
import sys
import timeit
from collections.abc import Callable

import tunflow.packet as packet
from tunflow.packet import checksum

Buf = bytes


def naive(data: Buf) -> int:
    """Word by word in Python (wireguard-go's checksumRef)."""
    s = 0
    n = len(data)
    for i in range(0, n - 1, 2):
        s += (data[i] << 8) | data[i + 1]
    if n & 1:
        s += data[-1] << 8
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _fold(s: int) -> int:
    return (s - 1) % 0xFFFF + 1 if s else 0


def struct_unpack(data: Buf) -> int:
    """``struct.unpack("!nH")`` then ``sum``."""
    n = len(data)
    s = sum(struct.unpack(f"!{n >> 1}H", data[: n & ~1]))
    if n & 1:
        s += data[-1] << 8
    return _fold(s)


def array_sum(data: Buf) -> int:
    """``array("H")`` in native order, ``sum``, then one byte swap of the result (RFC 1071:
    the sum is byte-order independent)."""
    n = len(data)
    a = array.array("H")
    a.frombytes(data[: n & ~1])
    s = sum(a)
    if n & 1:
        s += data[-1] if sys.byteorder == "little" else data[-1] << 8
    f = _fold(s)
    return ((f & 0xFF) << 8 | f >> 8) if sys.byteorder == "little" else f


def memoryview_cast(data: Buf) -> int:
    """``sum(memoryview(data).cast("H"))``, native order, byte swap of the result."""
    n = len(data)
    s = sum(memoryview(data)[: n & ~1].cast("H"))
    if n & 1:
        s += data[-1] if sys.byteorder == "little" else data[-1] << 8
    f = _fold(s)
    return ((f & 0xFF) << 8 | f >> 8) if sys.byteorder == "little" else f


def from_bytes_mod(data: Buf) -> int:
    """``int.from_bytes(data, "big") % 0xFFFF`` with the 0/0xFFFF case handled, no folding."""
    x = int.from_bytes(data, "big")
    if not x:
        return 0
    if len(data) & 1:
        x <<= 8
    return x % 0xFFFF or 0xFFFF


CANDIDATES: list[tuple[str, Callable[[Buf], int]]] = [
    ("naive loop", naive),
    ("struct.unpack+sum", struct_unpack),
    ("array('H')+sum", array_sum),
    ("memoryview.cast+sum", memoryview_cast),
    ("from_bytes % 0xFFFF", from_bytes_mod),
    # What ships: from_bytes, fold by halves above _FOLD_BITS, % 0xFFFF.
    ("tunflow.checksum", checksum),
]

SIZES = [20, 64, 576, 1448, 1500, 9000, 65535]


def bench(fn: Callable[[Buf], int], data: Buf, budget: float) -> float:
    """Best time per call in seconds."""
    t = timeit.Timer(lambda: fn(data))
    n, took = t.autorange()
    number = max(1, int(n * budget / max(took, 1e-9) / 5))
    return min(t.repeat(repeat=5, number=number)) / number


def check() -> None:
    rnd = os.urandom(70000)
    cases = [rnd[:n] for n in (*range(40), 1447, 1448, 65535)]
    cases += [b"\xff" * 1500, b"\xff" * 65535, b"\xfe" * 65535, bytes(100)]
    for name, fn in CANDIDATES:
        for c in cases:
            assert fn(c) == naive(c), (name, len(c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    args = ap.parse_args()
    budget = 0.05 if args.quick else 0.25
    check()
    print(f"Python {sys.version.split()[0]} on {os.uname().machine}; best of 5, same run\n")
    names = [name for name, _ in CANDIDATES]
    print("µs per call")
    print(f"{'bytes':>6} " + " ".join(f"{nm:>20}" for nm in names))
    results: dict[int, list[float]] = {}
    for size in SIZES:
        data = os.urandom(size)
        times = [bench(fn, data, budget) for _, fn in CANDIDATES]
        results[size] = times
        print(f"{size:>6} " + " ".join(f"{t * 1e6:>20.3f}" for t in times))
    print("\nns per byte")
    print(f"{'bytes':>6} " + " ".join(f"{nm:>20}" for nm in names))
    for size, times in results.items():
        print(f"{size:>6} " + " ".join(f"{t * 1e9 / size:>20.2f}" for t in times))
    print("\nspeed-up over the naive loop (naive time / candidate time)")
    print(f"{'bytes':>6} " + " ".join(f"{nm:>20}" for nm in names))
    for size, times in results.items():
        print(f"{size:>6} " + " ".join(f"{times[0] / t:>19.1f}x" for t in times))

    # Tune the fold threshold of the shipped function, side by side.
    print("\ntunflow.checksum by _FOLD_BITS (µs per call; 'off' = plain % 0xFFFF)")
    choices = [1024, 2048, 4096, 8192, 1 << 30]
    print(f"{'bytes':>6} " + " ".join(f"{('off' if c > 1 << 20 else c):>10}" for c in choices))
    saved = packet._FOLD_BITS
    try:
        for size in SIZES:
            data = os.urandom(size)
            row = []
            for c in choices:
                packet._FOLD_BITS = c  # type: ignore[misc]
                row.append(bench(checksum, data, budget / 2))
            print(f"{size:>6} " + " ".join(f"{t * 1e6:>10.3f}" for t in row))
    finally:
        packet._FOLD_BITS = saved  # type: ignore[misc]


if __name__ == "__main__":
    main()
