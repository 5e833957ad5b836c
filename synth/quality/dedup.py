"""Dedup: exact, then near-duplicate (MinHash LSH), over all trajectories.

A trajectory's key is its normalised instruction plus its action sequence
(Aguvis text, coordinates rounded to 0.01). Exact duplicates share the key;
near duplicates have a Jaccard similarity of word 3-gram shingles
at or above `threshold`. In each group one representative is kept (a passing
one first, then the shortest, then the smallest id, so the choice is the same
on every run) and the others get `duplicate_of`.

The near-duplicate pass is array work over all rows at once, with no Python
loop per row: Arrow's kernels tokenise, each distinct word is hashed once
(crc32, so hashes do not depend on row order or process), MinHash signatures
are numpy multiply-shift hashes, LSH buckets are found by sorting band keys,
and every candidate pair is then checked with the exact Jaccard similarity of
its two gram sets, so the threshold means what it says. bench/dedup.py
measures it against datatrove's MinHash pipeline on the same rows.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synth.actions import to_aguvis
from synth.schema import Action, Trajectory

_SPACE = re.compile(r"\s+")


def trajectory_key(t: Trajectory) -> str:
    """Normalised (instruction, action sequence)."""
    return action_key(t.instruction, [s.action for s in t.steps])


def normalize_instruction(text: str) -> str:
    """An instruction as instruction dedup compares it: lower case, runs of
    whitespace as one space."""
    return " ".join(text.lower().split())


def action_key(instruction: str, actions: Sequence[Action]) -> str:
    rounded = []
    for a in actions:
        a = a.model_copy(
            update={k: round(v, 2) for k in ("x", "y", "x2", "y2", "dx", "dy") if (v := getattr(a, k)) is not None}
        )
        rounded.append(to_aguvis(a))
    return _SPACE.sub(" ", instruction.strip().lower()) + " || " + " ; ".join(rounded)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive/negative areas of
    the LSH S-curve, as datasketch's MinHashLSH does (its default weight is 0.5)."""
    xs = np.linspace(0.0, 1.0, 1001)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - xs**r) ** b
            fp = np.trapezoid(p[xs <= threshold], xs[xs <= threshold])
            fn = np.trapezoid(1 - p[xs >= threshold], xs[xs >= threshold])
            err = fp_weight * fp + (1 - fp_weight) * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


# Candidates from the LSH buckets are verified against their signatures, so a
# false positive costs one vectorised comparison while a false negative loses a
# duplicate: the bands are chosen to weigh misses 19 times more than datasketch
# does (0.8 / 128 permutations: 16 bands of 8 rows, like datatrove's 14 x 8).
CANDIDATE_FP_WEIGHT = 0.05

_TOKEN_GAP = r"[^\pL\pN_.=']+"  # RE2 (Arrow's regex engine): what separates words
_GRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def shingle_hashes(texts: Sequence[str], n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Each text's word `n`-gram hashes, flattened, and the offsets where each
    text's grams start (a text of fewer than `n` words is one gram).

    Tokenising runs in Arrow's kernels over all texts at once and each distinct
    word is hashed once (crc32), so there is no Python loop per row or gram;
    the hashes depend only on the words, never on row order or the process."""
    arr = pc.utf8_trim_whitespace(pc.replace_substring_regex(pa.array(texts, pa.large_string()), _TOKEN_GAP, " "))
    words = pc.utf8_split_whitespace(arr)
    counts = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    encoded = pc.dictionary_encode(pc.list_flatten(words))
    vocabulary = np.fromiter((zlib.crc32(w.encode()) for w in encoded.dictionary.to_pylist()), dtype=np.uint64)
    word_hashes = vocabulary[encoded.indices.to_numpy()]
    word_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    grams_per_text = np.maximum(counts - n + 1, 1)
    gram_offsets = np.concatenate([[0], np.cumsum(grams_per_text)])
    # position of each gram's first word, then the gram as a polynomial of its words
    first = np.repeat(word_starts - gram_offsets[:-1], grams_per_text) + np.arange(gram_offsets[-1])
    width = np.repeat(np.minimum(counts, n), grams_per_text)
    padded = np.concatenate([word_hashes, np.zeros(n, np.uint64)])
    grams = np.zeros(len(first), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            grams = grams * _GRAM_MULTIPLIER + np.where(j < width, padded[first + j], np.uint64(0))
    return grams, gram_offsets[:-1]


class MinHasher:
    """Vectorised MinHash with multiply-shift hashing (one per permutation)."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signatures(self, grams: np.ndarray, starts: np.ndarray, chunk: int = 32_768) -> np.ndarray:
        """One row of `num_perm` uint32 minima per text, given the flat gram
        hashes and each text's start offset (every text has at least one gram).
        Works in chunks of about `chunk` grams so the (grams x permutations)
        block stays in cache-sized pieces."""
        ends = np.append(starts[1:], len(grams))
        out = np.empty((len(starts), self.num_perm), dtype=np.uint32)
        row = 0
        while row < len(starts):
            # rows [row, end) whose grams fit in one chunk (at least one row)
            end = max(int(np.searchsorted(ends, starts[row] + chunk, side="right")), row + 1)
            lo, hi = starts[row], ends[end - 1]
            with np.errstate(over="ignore"):
                h = np.multiply.outer(grams[lo:hi], self.a)
                h += self.b
            # the shift is monotonic, so it can follow the minimum (on far fewer values)
            out[row:end] = np.minimum.reduceat(h, starts[row:end] - lo, axis=0) >> np.uint64(32)
            row = end
        return out


def _candidate_pairs(sigs: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(heads, members): for each band, every text whose band equals an earlier
    text's is paired with the first text of its bucket (in sorted order)."""
    weights = np.random.default_rng(7).integers(1, 2**63, rows, dtype=np.uint64)
    heads, members = [], []
    for b in range(bands):
        with np.errstate(over="ignore"):
            keys = (sigs[:, b * rows : (b + 1) * rows].astype(np.uint64) * weights).sum(axis=1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        run_start = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
        head_pos = np.maximum.accumulate(np.where(run_start, np.arange(len(order)), 0))
        paired = ~run_start
        heads.append(order[head_pos[paired]])
        members.append(order[paired])
    return np.concatenate(heads), np.concatenate(members)


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the graph with edges (left[i], right[i]): each
    node's label is the smallest node of its component (label propagation with
    pointer jumping, all in numpy)."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[left], labels[right])
        before = labels.copy()
        np.minimum.at(labels, left, low)
        np.minimum.at(labels, right, low)
        while not np.array_equal(labels, labels[labels]):
            labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def _ragged(offsets: np.ndarray, counts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the spans of `rows` (span i: offsets[i], counts[i] long)
    and, for each position, which entry of `rows` it belongs to."""
    lengths = counts[rows]
    owner = np.repeat(np.arange(len(rows)), lengths)
    ends = np.cumsum(lengths)
    return np.repeat(offsets[rows] - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0), owner


def _gram_sets(grams: np.ndarray, starts: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct grams of each text in `texts` (ascending indices), as
    (flat grams, offsets, counts) indexed by text; other texts get no grams."""
    counts = np.diff(np.append(starts, len(grams)))
    pos, owner = _ragged(starts, counts, texts)
    g, t = grams[pos], texts[owner]
    order = np.lexsort((g, t))
    g, t = g[order], t[order]
    keep = np.concatenate([[True], (g[1:] != g[:-1]) | (t[1:] != t[:-1])])
    distinct = np.bincount(t[keep], minlength=len(starts))
    return g[keep], np.concatenate([[0], np.cumsum(distinct)[:-1]]), distinct


def _jaccard(sets: tuple[np.ndarray, np.ndarray, np.ndarray], left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the gram sets of each (left[i], right[i])."""
    grams, offsets, counts = sets
    lpos, lpair = _ragged(offsets, counts, left)
    rpos, rpair = _ragged(offsets, counts, right)
    pair = np.concatenate([lpair, rpair])
    g = np.concatenate([grams[lpos], grams[rpos]])
    order = np.lexsort((g, pair))
    g, pair = g[order], pair[order]
    shared = (g[1:] == g[:-1]) & (pair[1:] == pair[:-1])  # a gram in both sets of one pair
    inter = np.bincount(pair[1:][shared], minlength=len(left))
    return inter / (counts[left] + counts[right] - inter)


def near_duplicate_groups(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    chunk_pairs: int = 50_000,
    also: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> list[int]:
    """For each text, the index of its group's first member (itself if unique).

    Candidates are pairs that share a MinHash LSH bucket; a candidate is a near
    duplicate when the exact Jaccard similarity of the two texts' word 3-gram
    sets is >= `threshold` (checked exactly rather than estimated from the
    signatures, whose error near the threshold would drop or admit pairs at
    random). Groups are the connected components of that relation."""
    n = len(texts)
    if n == 0:
        return []
    grams, starts = shingle_hashes(texts)
    sigs = MinHasher(num_perm).signatures(grams, starts)
    heads, members = _candidate_pairs(sigs, *optimal_bands(threshold, num_perm, CANDIDATE_FP_WEIGHT))
    pairs = np.unique(np.stack([heads, members], axis=1), axis=0)
    if len(pairs) == 0:
        return list(range(n))
    sets = _gram_sets(grams, starts, np.unique(pairs))
    similar = [
        chunk[_jaccard(sets, chunk[:, 0], chunk[:, 1]) >= threshold]
        for chunk in np.array_split(pairs, max(1, len(pairs) // chunk_pairs))
    ]
    edges = np.concatenate(similar)
    if also is not None and len(edges):
        edges = edges[also(edges[:, 0], edges[:, 1])]
    return _components(n, edges[:, 0], edges[:, 1]).tolist()


@dataclass(frozen=True)
class Item:
    """What dedup needs of a trajectory: its key and how much it is preferred."""

    id: str
    key: str
    passing: bool
    length: int


_COORDINATE = re.compile(r"\b[xy]2?=(-?\d+(?:\.\d+)?)")


def _coordinates(key: str) -> np.ndarray:
    """The pointer coordinates in a key, in order."""
    return np.array([float(v) for v in _COORDINATE.findall(key)])


def duplicates(
    items: Sequence[Item], threshold: float | None = 0.8, num_perm: int = 128, tolerance: float = 0.02
) -> dict[str, str]:
    """{id: representative id} for every item that is not its group's
    representative. Groups are exact key matches, then near duplicates of the
    exact groups' keys (`threshold=None`: exact only); the representative is
    the passing one first, then the shortest, then the smallest id.

    Near duplicates have a Jaccard similarity of word 3-grams >= `threshold`
    and, when they have the same number of pointer coordinates (the same
    clicks, maybe elsewhere), each within `tolerance` (a fraction of the
    screenshot) of the other's. As words alone, a click moved across the page
    is one changed word, which on a one-click key is within a 0.8 threshold;
    but a moved target is a different grounding sample. Steps added or left
    out change the words, and the threshold judges those."""
    first: dict[str, int] = {}
    group = [first.setdefault(it.key, i) for i, it in enumerate(items)]
    if threshold is not None and items:
        # in key order, not in the items' order (staging's file order, which
        # differs between runs): LSH pairs each text with its bucket's first
        # one, so the order decides which near-duplicate chains are joined
        reps = sorted(set(group), key=lambda i: items[i].key)
        coordinates: dict[int, np.ndarray] = {}  # parsed only for candidate pairs

        def at(i: int) -> np.ndarray:
            if i not in coordinates:
                coordinates[i] = _coordinates(items[reps[i]].key)
            return coordinates[i]

        def clicks_close(left: np.ndarray, right: np.ndarray) -> np.ndarray:
            return np.array([
                len(at(a)) != len(at(b)) or bool(np.all(np.abs(at(a) - at(b)) <= tolerance + 1e-9))
                for a, b in zip(left.tolist(), right.tolist(), strict=True)
            ], dtype=bool)

        near = near_duplicate_groups([items[i].key for i in reps], threshold, num_perm, also=clicks_close)
        rep_group = {r: reps[g] for r, g in zip(reps, near, strict=True)}
        group = [rep_group[g] for g in group]
    members: dict[int, list[Item]] = {}
    for it, g in zip(items, group, strict=True):
        members.setdefault(g, []).append(it)
    out: dict[str, str] = {}
    for ms in members.values():
        keep = min(ms, key=lambda it: (not it.passing, it.length, it.id))
        out.update({it.id: keep.id for it in ms if it is not keep})
    return out


def item(t: Trajectory) -> Item:
    return Item(t.trajectory_id, trajectory_key(t), t.verdict.passed and t.error is None, len(t.steps))


@dataclass(frozen=True)
class Dedup:
    """A quality gate: sets `duplicate_of` on every non-representative member of
    an exact or near-duplicate group. `threshold=None` keeps exact only."""

    threshold: float | None = 0.8
    num_perm: int = 128
    tolerance: float = 0.02

    def __call__(self, trajectories: list[Trajectory]) -> list[Trajectory]:
        dup = duplicates([item(t) for t in trajectories], self.threshold, self.num_perm, self.tolerance)
        for t in trajectories:
            t.duplicate_of = dup.get(t.trajectory_id)
        return trajectories
