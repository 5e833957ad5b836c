"""Final shards: staging -> `data/<config>/train-0000k-of-0000n.parquet`.

The layout is the Hugging Face Hub's: one folder per config, shards named so
`datasets.load_dataset("parquet", data_dir=...)` and the Hub's viewer read the
folder as it is, and the `huggingface` schema metadata tells `datasets` that
`screenshot` is an Image. Everything is written into a temporary folder and
swapped in at the end, so readers never see half an export; the shards are a
pure function of staging, rebuilt whole on every run.

The same single pass writes the SFT views (synth/export/formats.py) of the
accepted trajectories to `data/sft-<format>/` (Parquet, or JSONL for
`openai`), and `dataset_info.json` at the dataset root for LLaMA-Factory.

The output may be on an object store (synth.storage): the shards are written
the same way, and the swap becomes a copy, which is not atomic there.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from synth import staging, storage
from synth.faults import crash_point
from synth.actions import to_aguvis
from synth.export import formats as sft
from synth.export import images as shared
from synth.schema import STEPS_SCHEMA, TRAJECTORIES_SCHEMA, Action, Observation

if TYPE_CHECKING:
    from synth.quality.stage import Verdict

IMAGE_COLUMNS = {"steps": ["screenshot"]}


def hf_schema(schema: pa.Schema, image_columns: Iterable[str] = ()) -> pa.Schema:
    """`schema` plus the `huggingface` metadata that names its Image columns
    (a column that is a list of images becomes a list of Image)."""
    from datasets import Features, Image

    features = Features.from_arrow_schema(schema)
    for col in image_columns:
        features[col] = [Image()] if pa.types.is_list(schema.field(col).type) else Image()
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features.to_dict()}})})


ROW_GROUP_ROWS = 2048
"""Rows buffered per row group at most, whatever their size: rows wait in the
buffer as Python dicts, several times their Parquet size, so a byte budget
alone would let a run's small text rows pile up in the driver."""


class ShardWriter:
    """Writes rows into numbered shards, `rows_per_shard` each, with row groups
    of at most `row_group_bytes` (the Hub's viewer wants them small in image
    configs) and `ROW_GROUP_ROWS` rows. Shards get their final `-of-N` names
    in `close()`."""

    def __init__(
        self, fs: pafs.FileSystem, folder: str, schema: pa.Schema, rows_per_shard: int, row_group_bytes: int
    ) -> None:
        self.fs, self.folder, self.schema = fs, folder, schema
        self.rows_per_shard, self.row_group_bytes = rows_per_shard, row_group_bytes
        storage.makedirs(fs, folder)
        self._writer: pq.ParquetWriter | None = None
        self._paths: list[str] = []
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._rows_in_shard = 0
        self.rows = 0

    def write(self, row: dict[str, Any], size_hint: int = 1024) -> None:
        self._buffer.append(row)
        self._buffer_bytes += size_hint
        self.rows += 1
        if self._buffer_bytes >= self.row_group_bytes or len(self._buffer) >= ROW_GROUP_ROWS:
            self._flush()
        if self._rows_in_shard + len(self._buffer) >= self.rows_per_shard:
            self._flush()
            self._close_shard()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            path = storage.join(self.folder, f".part-{len(self._paths):05d}.parquet")
            self._paths.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, filesystem=self.fs, compression="zstd")
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._rows_in_shard += len(self._buffer)
        self._buffer, self._buffer_bytes = [], 0

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._rows_in_shard = None, 0
            crash_point("export.shard")

    def close(self) -> list[str]:
        self._flush()
        self._close_shard()
        if not self._paths:  # an empty config still gets one (empty) shard
            # no row group at all: `datasets` fails on a row group of 0 rows
            path = storage.join(self.folder, ".part-00000.parquet")
            pq.ParquetWriter(path, self.schema, filesystem=self.fs, compression="zstd").close()
            self._paths.append(path)
        return _name_shards(self.fs, self.folder, self._paths, "parquet")


class JsonlShardWriter:
    """Writes rows as JSON lines into numbered shards of at most
    `rows_per_shard` rows and `max_bytes` bytes (OpenAI's Files API takes up to
    512 MB a file), named like the Parquet shards in `close()`."""

    def __init__(self, fs: pafs.FileSystem, folder: str, rows_per_shard: int, max_bytes: int = 500 << 20) -> None:
        self.fs, self.folder, self.rows_per_shard, self.max_bytes = fs, folder, rows_per_shard, max_bytes
        storage.makedirs(fs, folder)
        self._paths: list[str] = []
        self._file: Any = None
        self._rows_in_shard = self._bytes_in_shard = 0
        self.rows = 0

    def write(self, row: dict[str, Any], size_hint: int = 0) -> None:
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        if self._file is not None and (
            self._rows_in_shard >= self.rows_per_shard or self._bytes_in_shard + len(line) > self.max_bytes
        ):
            self._close_shard()
        if self._file is None:
            path = storage.join(self.folder, f".part-{len(self._paths):05d}.jsonl")
            self._paths.append(path)
            self._file = storage.open_output(self.fs, path)
        self._file.write(line)
        self._rows_in_shard += 1
        self._bytes_in_shard += len(line)
        self.rows += 1

    def _close_shard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._rows_in_shard, self._bytes_in_shard = None, 0, 0

    def close(self) -> list[str]:
        """Name the shards; with no rows there is none (an empty JSONL file is
        neither a valid OpenAI training file nor readable by `datasets`)."""
        self._close_shard()
        return _name_shards(self.fs, self.folder, self._paths, "jsonl")

    def abort(self) -> None:
        self._close_shard()


def _name_shards(fs: pafs.FileSystem, folder: str, parts: list[str], ext: str) -> list[str]:
    """Give written `.part-*` files their final `train-0000i-of-0000n` names."""
    final = []
    for i, path in enumerate(parts):
        target = storage.join(folder, f"train-{i:05d}-of-{len(parts):05d}.{ext}")
        storage.move(fs, path, target)
        final.append(target)
    return final


@dataclass
class ExportStats:
    trajectories: int = 0
    steps: int = 0
    duplicates_skipped: int = 0
    counts: dict[str, Counter] = field(default_factory=lambda: {
        "status": Counter(), "source": Counter(), "template": Counter(), "site": Counter(),
        "reject_reason": Counter(), "accepted_by_template": Counter(), "accepted_by_source": Counter(),
    })
    run_ids: set[str] = field(default_factory=set)
    cost_usd: float = 0.0
    cost_by_source: dict[str, float] = field(default_factory=dict)
    accepted_steps: int = 0
    sft_samples: dict[str, int] = field(default_factory=dict)
    """Training samples written per SFT format (accepted trajectories only)."""
    sft_left_out: dict[str, Counter] = field(default_factory=dict)
    """Steps a format left out (it cannot express them), by format and reason."""
    native: dict[str, int] = field(default_factory=dict)
    """Rows per native file written (`export.native`), e.g. `aguvis/stage2.json`."""
    images: dict[str, Any] = field(default_factory=lambda: {"storage": "inline"})
    """How the SFT views hold screenshots (synth/export/images.py); with
    `files`, the files written under `data/images/` and their bytes."""


def step_rows(traj: dict[str, Any]) -> Iterable[tuple[dict[str, Any], int]]:
    """`data/steps` rows for one staged trajectory, with a size hint each."""
    n = len(traj["steps"])
    for step in traj["steps"]:
        obs = step["observation"]
        png = obs["screenshot"]
        axtree = Observation.model_validate({**obs, "screenshot": None}).axtree()
        yield (
            {
                "trajectory_id": traj["trajectory_id"],
                "task_id": traj["task_id"],
                "template_id": traj["template_id"],
                "site": traj["site"],
                "source": traj["source"],
                "status": traj["status"],
                "instruction": traj["instruction"],
                "step_index": step["index"],
                "num_steps": n,
                "screenshot": {"bytes": png, "path": f"{traj['trajectory_id']}-{step['index']:03d}.png"} if png else None,
                "url": obs["url"],
                "title": obs["title"],
                "area": obs["area"],
                "axtree": axtree,
                "elements": obs["elements"],
                "action": step["action"],
                "action_text": to_aguvis(Action.model_validate(step["action"])),
                "element": step["element"],
                "monologue": step["monologue"],
                "error": step["error"],
                **_waits(step),
                "agent": step.get("agent"),
                **_role(step),
            },
            len(png or b"") + len(axtree) + 512,
        )


def trajectory_row(traj: dict[str, Any]) -> dict[str, Any]:
    """`data/trajectories` row: the trajectory with its steps summarised."""
    row = {k: traj[k] for k in TRAJECTORIES_SCHEMA.names if k in traj and k != "steps"}
    row["num_steps"] = len(traj["steps"])
    row["steps"] = [
        {
            "index": s["index"],
            "url": s["observation"]["url"],
            "action": s["action"],
            "element": s["element"],
            "monologue": s["monologue"],
            "error": s["error"],
            **_waits(s),
            **_role(s),
        }
        for s in traj["steps"]
    ]
    return row


def _waits(step: dict[str, Any]) -> dict[str, Any]:
    """What a replayer waits before the step: the actor's own wait, and the
    settle wait (staging written before it existed has none)."""
    return {"waited_ms": step.get("waited_ms") or 0.0, "settle_ms": step.get("settle_ms") or 0.0,
            "settled": step.get("settled", True) is not False}


def _role(step: dict[str, Any]) -> dict[str, Any]:
    """A recovery variant's step role and reflection (staging written before
    they existed has neither: every step was a normal one)."""
    return {"role": step.get("role") or "normal", "reflection": step.get("reflection")}


def apply_verdict(traj: dict[str, Any], v: Verdict) -> dict[str, Any]:
    """A staged row with the quality stage's verdict written in: the roles
    of the mistakes it found, and steps the minimality gate dropped
    (re-verified by replay) removed and the rest renumbered."""
    traj.update(
        status=v.status,
        reject_reason=v.reject_reason,
        consistency_flags=v.consistency_flags,
        duplicate_of=v.duplicate_of,
        replay_passed=v.replay_passed,
        review=v.review.model_dump() if v.review else traj.get("review"),
    )
    for s in traj["steps"]:
        if s["index"] in v.labels:  # a real mistake or its correction (synth/quality/mistakes.py)
            s["role"], reflection = v.labels[s["index"]]
            if reflection:
                s["reflection"] = reflection
                if not (s.get("monologue") and any(s["monologue"].values())):
                    s["monologue"] = {"observation": "", "thought": reflection, "low_level_instruction": ""}
        generated = v.monologues.get(s["index"])
        if generated is not None and not (s.get("monologue") and any(s["monologue"].values())):
            s["monologue"] = generated.model_dump()
    if v.drop_steps:
        drop = set(v.drop_steps)
        kept = [s for s in traj["steps"] if s["index"] not in drop]
        for i, s in enumerate(kept):
            s["index"] = i
        traj["steps"] = kept
    return traj


def export(
    out_dir: storage.Location,
    rows_per_shard: int = 20000,
    row_group_mb: int = 64,
    verdicts: dict[str, Verdict] | None = None,
    formats: Sequence[str] | None = None,
    native: Sequence[str] = (),
    images: shared.ImageStorage = "inline",
) -> ExportStats:
    """Rebuild `out_dir/data/` from `out_dir/staging/`, with the quality
    stage's `verdicts` applied. A trajectory id met a second time (a batch
    written twice by a retried worker) is skipped.

    `formats` are the SFT views to write (synth/export/formats.py; default:
    all registered): each gets `data/sft-<name>/`, built in the same pass from
    the trajectories whose status, verdict applied, is accepted. `native`
    (synth/export/native.py) are then written from the new `data/steps` to
    `out_dir/native/<name>/`. `images="files"` writes the Parquet SFT views'
    screenshots once each to `data/images/` and has the views name them
    (synth/export/images.py); `steps` and JSONL views stay inline."""
    fs, root = storage.resolve(out_dir)
    names = sft.check_names(sft.FORMATS if formats is None else formats)
    _remove_leftovers(fs, root)
    tmp = storage.join(root, f".data-{uuid.uuid4().hex[:8]}.tmp")
    stats = ExportStats(sft_samples={n: 0 for n in names})
    seen: set[str] = set()
    group_bytes = row_group_mb << 20
    trajectories = ShardWriter(fs, storage.join(tmp, "trajectories"), hf_schema(TRAJECTORIES_SCHEMA), 10**9, group_bytes)
    steps = ShardWriter(
        fs, storage.join(tmp, "steps"), hf_schema(STEPS_SCHEMA, IMAGE_COLUMNS["steps"]), rows_per_shard, group_bytes
    )
    store = shared.ImageStore(fs, storage.join(tmp, shared.FOLDER)) if images == "files" else None
    writers = {name: _sft_writer(fs, tmp, sft.FORMATS[name], rows_per_shard, group_bytes, store) for name in names}
    try:
        for traj in staging.iter_rows(storage.child(out_dir, "staging")):
            if traj["trajectory_id"] in seen:
                stats.duplicates_skipped += 1
                continue
            seen.add(traj["trajectory_id"])
            if verdicts is not None and traj["trajectory_id"] in verdicts:
                traj = apply_verdict(traj, verdicts[traj["trajectory_id"]])
            trajectories.write(trajectory_row(traj), 256 * (1 + len(traj["steps"])))
            for row, size in step_rows(traj):
                steps.write(row, size)
            if traj["status"] == "accepted":
                for name, writer in writers.items():
                    for sample in sft.FORMATS[name].samples(traj):
                        if isinstance(sample, sft.LeftOut):
                            stats.sft_left_out.setdefault(name, Counter())[sample.reason] += 1
                            continue
                        writer.write(*_sample(sft.FORMATS[name], sample, writer, store))
                        stats.sft_samples[name] += 1
            _count(stats, traj)
        trajectories.close()
        steps.close()
        for writer in writers.values():
            writer.close()
        # the data/ folder swapped in: two renames locally, a copy on object stores
        storage.replace_dir(fs, tmp, storage.join(root, "data"), between=lambda: crash_point("export.swap"))
    except BaseException:
        for writer in writers.values():
            if isinstance(writer, JsonlShardWriter):
                writer.abort()
        storage.delete_dir(fs, tmp)
        raise
    if store is not None:
        stats.images = {"storage": "files", "files": len(store.written), "bytes": store.bytes}
    _write_dataset_info(fs, root, "messages" in names)
    if native:
        from synth.export.native import write_native

        stats.native = write_native(out_dir, list(native)).rows
    return stats


def _sft_writer(
    fs: pafs.FileSystem, tmp: str, fmt: sft.SFTFormat, rows_per_shard: int, group_bytes: int,
    store: shared.ImageStore | None,
) -> ShardWriter | JsonlShardWriter:
    """A view's writer: Parquet (its image columns as paths when `store`
    holds the images) or JSONL."""
    folder = storage.join(tmp, fmt.config)
    if fmt.schema is None:
        return JsonlShardWriter(fs, folder, rows_per_shard)
    if store is not None and fmt.image_columns:
        schema = hf_schema(shared.path_schema(fmt.schema, fmt.image_columns))
    else:
        schema = hf_schema(fmt.schema, fmt.image_columns)
    return ShardWriter(fs, folder, schema, rows_per_shard, group_bytes)


def _sample(
    fmt: sft.SFTFormat, sample: dict[str, Any], writer: ShardWriter | JsonlShardWriter, store: shared.ImageStore | None
) -> tuple[dict[str, Any], int]:
    """The row a view's writer gets for a sample, and its size hint (the
    image bytes count only where the row holds them)."""
    if isinstance(writer, JsonlShardWriter):
        return sample, 0
    if store is not None and fmt.image_columns:
        sample = shared.to_paths(sample, fmt.image_columns, store)
    return sample, sft.sample_bytes(sample)


def _remove_leftovers(fs: pafs.FileSystem, root: str) -> None:
    """What a killed run left at the dataset root: a half-built `.data-*.tmp`
    or an old `.data-old-*` folder, and temporary files of atomic writes
    (manifest, card, reviews)."""
    for folder in storage.list_dirs(fs, root):
        name = folder.rsplit("/", 1)[-1]
        if name.startswith(".data-") and (name.endswith(".tmp") or name.startswith(".data-old-")):
            storage.delete_dir(fs, folder)
    for path in storage.list_files(fs, root, ".tmp", hidden=True):
        if path.rsplit("/", 1)[-1].startswith("."):
            storage.delete(fs, path)


def _write_dataset_info(fs: pafs.FileSystem, root: str, messages: bool) -> None:
    """LLaMA-Factory's `dataset_info.json` at the dataset root (its
    `dataset_dir`), naming `data/sft-messages`; removed when that config is not
    exported. It cannot go inside the config's folder: LLaMA-Factory reads a
    `file_name` folder whole and wants one file type there."""
    path = storage.join(root, "dataset_info.json")
    if not messages:
        storage.delete(fs, path)
        return
    storage.write_atomic(fs, path, json.dumps(sft.llamafactory_dataset_info(), indent=2) + "\n")


def _count(stats: ExportStats, traj: dict[str, Any]) -> None:
    c = stats.counts
    stats.trajectories += 1
    stats.steps += len(traj["steps"])
    stats.run_ids.add(traj["run_id"])
    stats.cost_usd += traj["cost_usd"] or 0.0
    stats.cost_by_source[traj["source"]] = stats.cost_by_source.get(traj["source"], 0.0) + (traj["cost_usd"] or 0.0)
    c["status"][traj["status"]] += 1
    c["source"][traj["source"]] += 1
    c["template"][traj["template_id"]] += 1
    c["site"][traj["site"]] += 1
    if traj["status"] == "accepted":
        stats.accepted_steps += len(traj["steps"])
        c["accepted_by_template"][traj["template_id"]] += 1
        c["accepted_by_source"][traj["source"]] += 1
    else:
        reason = (traj["reject_reason"] or "unknown").split(":", 1)[0]
        c["reject_reason"][reason] += 1
