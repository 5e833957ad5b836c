"""datatrove side of bench/dedup.py; runs in bench/.venv-datatrove.

    bench/.venv-datatrove/bin/python bench/_datatrove_worker.py --input rows.parquet --workdir DIR \\
        [--tasks 2] [--workers 2]

datatrove needs its own venv (its numpy, pyarrow, tokenizers and
huggingface_hub pins are not synth's business), so the bench calls
`ensure_venv()` from synth's venv (this module imports only the stdlib at top
level), then starts this file with the returned interpreter and reads one JSON
line from its stdout:

    {"rows": N, "seconds": S, "removed": K, "removed_ids": "DIR/removed_ids.txt",
     "stage_seconds": {"shard": .., "signatures": .., "buckets": .., "cluster": .., "filter": ..},
     "datatrove": "0.10.1", "tasks": T, "workers": W, "config": "..."}

Everything else (datatrove's loguru logs, its per-stage stats) goes to stderr
and DIR/logs/<stage>/. `removed_ids` names a file with the ids the filter stage
dropped, one per line.

The pipeline is datatrove's MinHash dedup as in its
examples/minhash_deduplication.py, each stage on a LocalPipelineExecutor:

* signatures: ParquetReader(text_key="text", id_key="id") ->
  MinhashDedupSignature, T tasks on W workers;
* buckets: MinhashDedupBuckets, one task per bucket (14: datatrove requires
  tasks % num_buckets == 0) on W workers;
* cluster: MinhashDedupCluster, 1 task (datatrove requires world_size 1);
* filter: the same ParquetReader (same tasks, so each task's document indices
  match its signatures) -> MinhashDedupFilter(exclusion_writer=JsonlWriter) ->
  JsonlWriter, T tasks on W workers. The writers keep datatrove's defaults
  (gzip), as the example does; the example's TokensCounter is left out (it
  downloads a GPT-2 tokenizer).

MinhashConfig(n_grams=3, num_buckets=14, hashes_per_bucket=8), the rest
default: seed 1, HashConfig(precision=64, hash_fc="xxhash"), TextNormConfig's
defaults (lowercase, punctuation -> space, whitespace collapsed, diacritics
normalised) except digits, which are kept (`--norm-numbers`: datatrove's
default, every digit -> 0; in trajectory keys the digits are coordinates and
zeroing them merges unrelated trajectories). So word 3-grams of the
normalised text.

Differences from the example, forced by the setting (besides the digits):

* datatrove's readers shard by file (task r reads files r, r+T, ...), so one
  Parquet file would leave every task but the first idle. With T > 1 the input
  is first cut into T contiguous Parquet files in DIR/shards (timed, as stage
  "shard"); with T == 1 the input file is read as it is.
* The word tokenizer. For "en" datatrove 0.10.1 assigns SpaCyTokenizer("en")
  (assets/tokenizer_assignment.csv), i.e. `spacy.blank("en")`: no model
  download, but spaCy itself (datatrove's "multilingual" extra, not
  "processing"). Its NLTK tokenizer would download punkt. Here
  MinhashDedupSignature gets a WordTokenizer instance that splits on
  whitespace: the text has already been through simplify_text (lower case, no
  punctuation, single spaces), so this is what spaCy's blank English tokenizer
  does on it bar its special cases ("dont" -> "do", "nt", "0km" -> "0", "km").
* Every executor runs with skip_completed=False and the stage folders in DIR
  are emptied first, so a reused DIR never skips work.

Timing: wall clock from before the shard step (or the first read) to the end
of the filter stage, so it includes reading the input twice (datatrove's filter
stage re-reads it), datatrove's process pools and writing the deduplicated
output. Collecting the removed ids from the exclusion files afterwards is not
timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".venv-datatrove"
DATATROVE = "datatrove==0.10.1"
# Only what the MinHash pipeline imports: the dedup package imports its
# exact-substring step, hence `tokenizers`; text utils need `regex`; the
# default hash is xxhash (datatrove's "processing" extra pins xxhash<4);
# ParquetReader needs pyarrow, JsonlWriter orjson. The "processing" extra would add fasttext,
# nltk, trafilatura, inscriptis, ... none of which this pipeline uses.
REQUIREMENTS = [DATATROVE, "regex", "tokenizers", "xxhash<4", "pyarrow", "orjson"]
STAGES = ("shard", "signatures", "buckets", "cluster", "filter")
_CHECK = (
    "import importlib.metadata as m, datatrove.pipeline.dedup, datatrove.pipeline.readers.parquet, pyarrow, xxhash, orjson;"
    f"assert m.version('datatrove') == {DATATROVE.split('==')[1]!r}"
)


def ensure_venv() -> Path:
    """datatrove's own venv (bench/.venv-datatrove), created on first use; returns its python."""
    from _common import ensure_venv as ensure

    return ensure(VENV, REQUIREMENTS, _CHECK, "datatrove")


# ---------------------------------------------------------------- the worker (datatrove's venv only)


def _whitespace_tokenizer():  # -> datatrove WordTokenizer
    """A WordTokenizer that needs no spaCy/NLTK data (see the module docstring)."""
    from datatrove.utils.word_tokenizers import WordTokenizer

    class WhitespaceWords(WordTokenizer):
        def __init__(self) -> None:
            super().__init__("en")

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    return WhitespaceWords()


def _shard(src: Path, dst: Path, tasks: int) -> int:
    """Cut `src` into `tasks` contiguous Parquet files in `dst`; returns the row count."""
    import pyarrow.parquet as pq

    table = pq.read_table(src, columns=["id", "text"])
    dst.mkdir(parents=True)
    n = table.num_rows
    for i in range(tasks):
        lo, hi = n * i // tasks, n * (i + 1) // tasks
        pq.write_table(table.slice(lo, hi - lo), dst / f"part-{i:05d}.parquet")
    return n


def run(src: Path, workdir: Path, tasks: int, workers: int, norm_numbers: bool = False) -> dict:
    from importlib.metadata import version

    import pyarrow.parquet as pq
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    from datatrove.utils.text import TextNormConfig

    # datatrove's default text normalisation maps every digit to 0, for prose;
    # in trajectory keys the digits are the click coordinates, and with them
    # zeroed unrelated trajectories collide (5,282 false removals of 200k rows
    # in bench/dedup.py). `--norm-numbers` restores the default.
    norm = TextNormConfig(norm_numbers=norm_numbers)
    config = MinhashConfig(n_grams=3, num_buckets=14, hashes_per_bucket=8, norm_config=norm)
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("shards", "signatures", "buckets", "remove_ids", "removed", "output", "logs"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    removed_ids = workdir / "removed_ids.txt"
    removed_ids.unlink(missing_ok=True)

    def reader() -> ParquetReader:
        if tasks == 1:  # the input file as it is
            paths = workdir / "paths.txt"
            paths.write_text(src.name + "\n")
            return ParquetReader(str(src.parent), paths_file=str(paths), text_key="text", id_key="id")
        return ParquetReader(str(workdir / "shards"), text_key="text", id_key="id")

    def executor(name: str, pipeline: list, n_tasks: int, n_workers: int) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=n_tasks,
            workers=min(n_workers, n_tasks),
            logging_dir=str(workdir / "logs" / name),
            skip_completed=False,
        )

    stage_seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if tasks > 1:
        rows = _shard(src, workdir / "shards", tasks)
    else:
        rows = pq.ParquetFile(src).metadata.num_rows
    stage_seconds["shard"] = time.perf_counter() - t0

    stages = [
        ("signatures", [
            reader(),
            MinhashDedupSignature(
                output_folder=str(workdir / "signatures"), config=config, language=_whitespace_tokenizer()
            ),
        ], tasks, workers),
        ("buckets", [
            MinhashDedupBuckets(
                input_folder=str(workdir / "signatures"), output_folder=str(workdir / "buckets"), config=config
            ),
        ], config.num_buckets, workers),
        ("cluster", [
            MinhashDedupCluster(
                input_folder=str(workdir / "buckets"), output_folder=str(workdir / "remove_ids"), config=config
            ),
        ], 1, 1),
        ("filter", [
            reader(),
            MinhashDedupFilter(
                input_folder=str(workdir / "remove_ids"), exclusion_writer=JsonlWriter(str(workdir / "removed"))
            ),
            JsonlWriter(output_folder=str(workdir / "output")),
        ], tasks, workers),
    ]
    for name, pipeline, n_tasks, n_workers in stages:
        s0 = time.perf_counter()
        executor(name, pipeline, n_tasks, n_workers).run()
        stage_seconds[name] = time.perf_counter() - s0
    seconds = time.perf_counter() - t0

    # not timed: the ids the filter dropped, from its exclusion files
    import gzip

    ids = []
    for f in sorted((workdir / "removed").glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            ids.extend(json.loads(line)["id"] for line in fh)
    removed_ids.write_text("".join(f"{i}\n" for i in ids))
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "removed": len(ids),
        "removed_ids": str(removed_ids),
        "stage_seconds": {k: round(v, 3) for k, v in stage_seconds.items()},
        "datatrove": version("datatrove"),
        "tasks": tasks,
        "workers": workers,
        "config": str(config),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, type=Path, help="Parquet file with columns id, text")
    ap.add_argument("--workdir", required=True, type=Path, help="datatrove's folders and logs go here")
    ap.add_argument("--tasks", type=int, default=2, help="tasks of the signature and filter stages (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="processes per stage (default 2)")
    ap.add_argument("--norm-numbers", action="store_true", help="datatrove's default normalisation: every digit -> 0")
    args = ap.parse_args(argv)
    if args.tasks < 1 or args.workers < 1:
        ap.error("--tasks and --workers must be >= 1")
    # datatrove and its pool processes log to stderr; keep fd 1 for the one JSON line
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    result = run(args.input.resolve(), args.workdir.resolve(), args.tasks, args.workers, args.norm_numbers)
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
