"""synth's near-duplicate pass against datatrove's MinHash pipeline, same rows.

    .venv/bin/python bench/dedup.py [--rows 200000] [--check] [--target 2.0]

Rows. `--rows` synthetic trajectory keys, the text synth's dedup gate compares
(`synth.quality.dedup.action_key`: the normalised instruction, then the action
sequence as Aguvis calls): 80% originals with random instructions and 8-16
random actions, 10% exact copies of random originals, 10% copies with one
instruction word replaced (Jaccard of word 3-grams between about 0.78 and
0.95, mostly above 0.8). Every row's original is known, so both tools are
scored against the truth, not only against each other. The rows are written
once to a Parquet file (`id`, `text`) that both tools read.

Runners, each timed from reading that file to knowing which rows to drop:

* synth: `synth.quality.dedup.duplicates` (exact, then MinHash LSH with exact
  Jaccard verification, threshold 0.8, 128 permutations), in this process.
* datatrove 0.10.1: its MinHash pipeline (signatures, buckets, clusters,
  filter; 14 buckets x 8 hashes, word 3-grams) with the local executor, in its
  own venv, bench/.venv-datatrove (created on first use), as a subprocess
  (bench/_datatrove_worker.py) that prints its timing as JSON.

synth runs before and after datatrove and its mean is used, so load drift hits
both. Verdict: synth rows/s over datatrove rows/s (target >= 2x) and the
number of rows each removes (target: within 2% of each other).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import load, machine_note
from _datatrove_worker import ensure_venv

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from synth.quality.dedup import Item, duplicates  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_datatrove_worker.py"
KEYS = ("enter", "tab", "esc", "down", "backspace")


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))


def _action(rng: random.Random, words: list[str]) -> str:
    kind = rng.random()
    if kind < 0.6:
        return f"pyautogui.click(x={rng.randint(0, 99) / 100}, y={rng.randint(0, 99) / 100})"
    if kind < 0.8:
        return f"pyautogui.write(message='{' '.join(rng.choices(words, k=rng.randint(1, 3)))}')"
    if kind < 0.9:
        return f"pyautogui.press(keys='{rng.choice(KEYS)}')"
    return f"pyautogui.scroll(page={-rng.randint(1, 99) / 100})"


def generate(rows: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """`rows` trajectory keys and, for each, the index of its original."""
    rng = random.Random(seed)
    words = [_word(rng) for _ in range(5000)]
    n_orig, n_exact = rows * 8 // 10, rows // 10
    originals = [
        " ".join(rng.choices(words, k=rng.randint(8, 14)))
        + " || "
        + " ; ".join(_action(rng, words) for _ in range(rng.randint(8, 16)))
        for _ in range(n_orig)
    ]
    texts, truth = list(originals), list(range(n_orig))
    for i in range(rows - n_orig):
        j = rng.randrange(n_orig)
        text = originals[j]
        if i >= n_exact:  # one instruction word replaced
            instruction, actions = text.split(" || ")
            w = instruction.split(" ")
            w[rng.randrange(len(w))] = rng.choice(words)
            text = " ".join(w) + " || " + actions
        texts.append(text)
        truth.append(j)
    order = list(range(rows))
    rng.shuffle(order)
    return [texts[i] for i in order], [truth[i] for i in order]


def score(removed: set[str], ids: list[str], truth: list[int]) -> dict[str, int]:
    """How many removals are right: in each true group of size s at most s - 1."""
    size = Counter(truth)
    removed_per_group = Counter(truth[i] for i, rid in enumerate(ids) if rid in removed)
    right = sum(min(r, size[g] - 1) for g, r in removed_per_group.items())
    return {"removed": len(removed), "right": right, "wrong": len(removed) - right, "true": len(ids) - len(size)}


def run_synth(path: Path) -> tuple[float, set[str]]:
    t0 = time.perf_counter()
    table = pq.read_table(path, columns=["id", "text"])
    items = [Item(i, t, True, t.count(" ; ") + 1) for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True)]
    removed = set(duplicates(items, threshold=0.8, num_perm=128))
    return time.perf_counter() - t0, removed


def run_datatrove(path: Path, workdir: Path, python: Path, workers: int) -> tuple[float, set[str], dict]:
    cmd = [str(python), str(WORKER), "--input", str(path), "--workdir", str(workdir), "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"datatrove worker failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    removed = set(Path(result["removed_ids"]).read_text().split())
    return result["seconds"], removed, result


def main(args: argparse.Namespace) -> int:
    python = ensure_venv()
    start_load = load()
    with tempfile.TemporaryDirectory(prefix="synth-bench-dedup-") as tmp:
        path = Path(tmp) / "rows.parquet"
        texts, truth = generate(args.rows, args.seed)
        ids = [f"r{i:07d}" for i in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), path)
        print(f"{args.rows:,} rows ({sum(len(t) for t in texts) / len(texts):.0f} chars each on average) in {path}", flush=True)

        synth_before, synth_removed = run_synth(path)
        print(f"synth       {synth_before:7.1f} s", flush=True)
        dt_seconds, dt_removed, dt = run_datatrove(path, Path(tmp) / "datatrove", python, args.workers)
        print(f"datatrove   {dt_seconds:7.1f} s  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in dt.get("stage_seconds", {}).items()), flush=True)
        synth_after, again = run_synth(path)
        print(f"synth       {synth_after:7.1f} s", flush=True)
        if again != synth_removed:
            raise SystemExit("synth removed different rows on its second run: dedup is not deterministic")

    synth_seconds = statistics.mean([synth_before, synth_after])
    rows = {"synth": (synth_seconds, score(synth_removed, ids, truth)), f"datatrove {dt.get('datatrove', '')}": (dt_seconds, score(dt_removed, ids, truth))}
    print(f"\n{'runner':<18} {'seconds':>8} {'rows/s':>9} {'removed':>8} {'right':>7} {'wrong':>6} {'recall':>7}")
    for name, (seconds, s) in rows.items():
        print(f"{name:<18} {seconds:8.1f} {args.rows / seconds:9,.0f} {s['removed']:8,} {s['right']:7,} {s['wrong']:6,} {s['right'] / s['true']:7.1%}")
    ratio = dt_seconds / synth_seconds
    gap = abs(len(synth_removed) - len(dt_removed)) / max(1, len(dt_removed))
    both = len(synth_removed & dt_removed)
    print(f"\nrows removed by both: {both:,} (true duplicates: {score(set(), ids, truth)['true']:,})")
    print(f"synth / datatrove rows/s = {ratio:.2f}x (target >= {args.target}x)")
    print(f"removed-count difference = {gap:.2%} (target <= {args.tolerance:.0%})")
    print(machine_note(start_load))
    missed = ratio < args.target or gap > args.tolerance
    return 1 if args.check and missed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help="rows to generate (default 200000)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--workers", type=int, default=2, help="datatrove's local executor workers (default 2, the cores here)")
    ap.add_argument("--target", type=float, default=2.0, help="the rows/s ratio --check enforces (default 2.0)")
    ap.add_argument("--tolerance", type=float, default=0.02, help="largest removed-count difference --check accepts (default 0.02)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    return ap.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
