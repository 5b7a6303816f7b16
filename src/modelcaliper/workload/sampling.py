"""Sampling priorities and the bounded keeper of lowest-priority candidates.

Each row gets a 64-bit priority from a bijective mixer (splitmix64's finaliser) of its
position, or of a hash of its group's value, keyed by the seed. Keeping the rows (or whole
groups) of lowest priority is a uniform sample without replacement whose result does not
depend on how the rows arrive, so ``Keeper`` can stream any source in bounded memory: once it
holds enough candidates it knows a priority threshold above which nothing can make the cut.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelcaliper.errors import DataError

__all__ = ["ALL_PRIORITIES", "Keeper", "mix", "row_priorities", "seed_key", "value_hashes"]

_U64 = np.uint64
ALL_PRIORITIES = 1 << 64
"""The number of distinct priorities; a fraction F keeps priorities below F * ALL_PRIORITIES."""


def mix(values: np.ndarray) -> np.ndarray:
    """A 64-bit bijective mixer (splitmix64's finaliser) applied elementwise."""
    z = np.asarray(values, dtype=_U64) + _U64(0x9E3779B97F4A7C15)
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def seed_key(seed: int, stream: int) -> np.uint64:
    """A 64-bit key for one random stream (rows, groups, ...) of ``seed``."""
    return _U64(mix(np.array([(seed * 0x2545F4914F6CDD1D + stream) % ALL_PRIORITIES]))[0])


def row_priorities(positions: np.ndarray, seed: int) -> np.ndarray:
    """The sampling priority of each row position under ``seed`` (uniform 64-bit values)."""
    return mix(np.asarray(positions, dtype=_U64) ^ seed_key(seed, 1))


_NULL_HASH = _U64(0x6E756C6C6E756C6C)


def value_hashes(column: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    """A 64-bit hash of each value, the same for equal values in any file or batch."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_temporal(kind):
        array, kind = array.cast(pa.int64()), pa.int64()
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        filled = pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        out = mix(filled.astype(np.int64).view(_U64))
    elif pa.types.is_floating(kind):
        filled = pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        filled = np.where(filled == 0.0, 0.0, filled)  # -0.0 and 0.0 are one group
        filled = np.where(np.isnan(filled), np.nan, filled)
        out = mix(filled.view(_U64) ^ _U64(0xF10A7))
    elif (pa.types.is_string(kind) or pa.types.is_large_string(kind)
          or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        encoded = pc.dictionary_encode(array)
        words = [b"" if v is None else (v if isinstance(v, bytes) else v.encode("utf-8"))
                 for v in encoded.dictionary.to_pylist()]
        table = np.fromiter(
            (int.from_bytes(hashlib.blake2b(w, digest_size=8).digest(), "little") for w in words),
            dtype=_U64, count=len(words))
        indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        out = table[indices] if len(words) else np.zeros(len(array), dtype=_U64)
    else:
        raise DataError(f"column '{name}' holds {kind}; group or stratify by a column of "
                        "numbers, strings or dates")
    out = np.asarray(out, dtype=_U64)
    out[nulls] = _NULL_HASH
    return out


class Keeper:
    """Candidates of lowest priority: all rows under ``cut``, or whole groups up to ``quota``."""

    def __init__(self, quota: int | None, cut: int | None, grouped: bool) -> None:
        self.quota = quota
        self.cut = None if cut is None or cut >= ALL_PRIORITIES else _U64(cut)
        self.grouped = grouped
        self.threshold: np.uint64 | None = None
        self.priorities: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []
        self.tables: list[pa.Table] = []
        self.size = 0

    def add(self, priorities: np.ndarray, positions: np.ndarray, table: pa.Table | None) -> None:
        """Offer rows (with their table, or None to keep positions only) as candidates."""
        if self.quota == 0:
            return
        keep = None
        if self.cut is not None:
            keep = priorities < self.cut
        if self.threshold is not None:
            below = priorities <= self.threshold
            keep = below if keep is None else keep & below
        if keep is not None and not keep.all():
            priorities, positions = priorities[keep], positions[keep]
            if table is not None:
                table = table.filter(pa.array(keep))
        if not positions.size:
            return
        self.priorities.append(priorities)
        self.positions.append(positions)
        if table is not None:
            self.tables.append(table)
        self.size += positions.size
        if self.quota is not None and self.size > 2 * self.quota + 4096:
            self.compact()

    def compact(self) -> None:
        """Drop every candidate that can no longer make the cut, and lower the threshold."""
        if not self.priorities:
            return
        priorities = np.concatenate(self.priorities)
        positions = np.concatenate(self.positions)
        table = pa.concat_tables(self.tables) if self.tables else None
        if self.quota is not None and priorities.size > self.quota:
            if self.grouped:
                values, counts = np.unique(priorities, return_counts=True)
                last = int(np.searchsorted(np.cumsum(counts), self.quota))
                self.threshold = values[min(last, values.size - 1)]
                chosen = np.flatnonzero(priorities <= self.threshold)
            else:
                chosen = np.argpartition(priorities, self.quota - 1)[: self.quota]
                self.threshold = priorities[chosen].max()
            priorities, positions = priorities[chosen], positions[chosen]
            if table is not None:
                table = table.take(pa.array(chosen))
        self.priorities, self.positions = [priorities], [positions]
        self.tables = [table] if table is not None else []
        self.size = positions.size

    def result(self) -> tuple[np.ndarray, pa.Table | None]:
        """The kept positions in ascending order, with their rows in the same order."""
        self.compact()
        if not self.positions:
            return np.empty(0, dtype=np.int64), None
        positions = self.positions[0].astype(np.int64)
        order = np.argsort(positions, kind="stable")
        table = self.tables[0].take(pa.array(order)) if self.tables else None
        return positions[order], table
