"""Native files: each seed trainer's own on-disk shape, read by its own code.

The `sft-*` Parquet views suit `datasets`, ms-swift and LLaMA-Factory; the
Aguvis and CogAgent training scripts read neither Parquet nor embedded image
bytes. `write_native()` turns the exported `data/steps` (accepted rows, the
quality verdict and generated monologues already applied) into the files those
scripts read, with the same samples as the `sft-aguvis-*` / `sft-cogagent`
views (synth/export/formats.py builds both):

`aguvis/` (xlang-ai/aguvis `src/aguvis/dataset.py`, `data/stage*.yaml`,
  `scripts/train.sh`): `stage1.json` (grounding) and `stage2.json` (planning),
  each one JSON list of `{"id", "image", "conversations": [{"from", "value",
  "recipient"?, "end_turn"?}]}`; `image` is a file name under `images/`, each
  screenshot written once (named by its content hash) and shared by both
  stages. The loader opens `os.path.join(--image_folder, images_folder,
  image)`; `stage1.yaml`/`stage2.yaml` give `json_path` (absolute, as the loader
  opens it from its working directory) and `images_folder: images/`, so
  `--data_path <dir>/stage2.yaml --image_folder <dir>` trains as is (or
  `--data_path <dir>/stage2.json --image_folder <dir>/images`). A gpt turn
  carries `recipient`/`end_turn` only when set: the loader's chat template
  writes `<|recipient|>` for any `recipient` key, None included.
`cogagent/` (THUDM/CogAgent `finetune/finetune.py`, `finetune/README_en.md`,
  `finetune/configs/*.yaml`): `train.jsonl` and `dev.jsonl` (the configs'
  `train_file`, `val_file` and `test_file`; `load_dataset(<dir>, data_files=...)`
  needs all that are set), one `{"id", "messages": [{"role": "user", "content",
  "image"}, {"role": "assistant", "content", "image"}, {"role": "user",
  "content": ""}]}` a line (why three: `CogAgentWriter._row`); `image` is the
  path `Image.open` gets, from the script's working directory, so it is absolute (`image_root` changes the folder written, e.g. where the
  copy will sit on the training machine). `dev.jsonl` holds about one
  trajectory in `DEV_EVERY` (by id hash), never split across files.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
import yaml

from synth import storage
from synth.export import formats as sft

NATIVE = ("aguvis", "cogagent")
DEV_EVERY = 20
STEP_COLUMNS = ["trajectory_id", "template_id", "source", "status", "instruction", "step_index",
                "screenshot", "area", "elements", "action", "element", "monologue", "error", "role"]


@dataclass
class NativeStats:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written per file (e.g. `aguvis/stage2.json`)."""
    images: int = 0
    left_out: dict[str, Counter] = field(default_factory=dict)


def check_native(names: list[str]) -> list[str]:
    """The names, in order without repeats; an unknown one raises ValueError."""
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in NATIVE]
    if unknown:
        raise ValueError(f"unknown native format(s) {', '.join(map(repr, unknown))}; known: {', '.join(NATIVE)}")
    return names


def accepted_trajectories(out_dir: storage.Location) -> Iterator[dict[str, Any]]:
    """The accepted trajectories of an export, rebuilt from `data/steps` in the
    shape `formats.steps()` reads (export writes a trajectory's steps together)."""
    fs, root = storage.resolve(out_dir)
    files = storage.list_files(fs, storage.join(root, "data", "steps"), ".parquet")
    if not files:
        raise FileNotFoundError(f"no data/steps shards under {storage.absolute(out_dir)}: run the pipeline first")
    current: dict[str, Any] | None = None
    for path in sorted(files):
        with fs.open_input_file(path) as f:
            shard = pq.ParquetFile(f)
            present = set(shard.schema_arrow.names)  # shards written before `role` existed have none
            for batch in shard.iter_batches(batch_size=64, columns=[c for c in STEP_COLUMNS if c in present]):
                for row in batch.to_pylist():
                    if row["status"] != "accepted":
                        continue
                    if current is None or current["trajectory_id"] != row["trajectory_id"]:
                        if current is not None:
                            yield current
                        current = {k: row[k] for k in ("trajectory_id", "template_id", "source", "instruction")}
                        current["steps"] = []
                    current["steps"].append(_step(row))
    if current is not None:
        yield current


def _step(row: dict[str, Any]) -> dict[str, Any]:
    shot = row["screenshot"]
    return {
        "index": row["step_index"],
        "error": row["error"],
        "action": row["action"],
        "element": row["element"],
        "monologue": row["monologue"],
        "role": row.get("role") or "normal",  # a recovery variant's mistake stays history, never a target
        "observation": {"screenshot": shot["bytes"] if shot else None, "area": row["area"], "elements": row["elements"]},
    }


class Images:
    """Screenshots as files under `folder`, each written once, named by content."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: set[str] = set()

    def put(self, png: bytes) -> str:
        name = hashlib.sha256(png).hexdigest()[:24] + ".png"
        if name not in self.written:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_bytes(png)
            self.written.add(name)
        return name


def _samples(fmt: str, traj: dict[str, Any], stats: NativeStats) -> Iterator[dict[str, Any]]:
    for sample in sft.FORMATS[fmt].samples(traj):
        if isinstance(sample, sft.LeftOut):
            stats.left_out.setdefault(fmt, Counter())[sample.reason] += 1
        else:
            yield sample


def _aguvis_turn(turn: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in turn.items() if v is not None}


class AguvisWriter:
    STAGES = (("stage1", "aguvis-grounding"), ("stage2", "aguvis-planning"))

    def __init__(self, folder: Path, final: Path) -> None:
        self.folder, self.final = folder, final
        self.images = Images(folder / "images")
        self.rows: dict[str, list[dict[str, Any]]] = {stage: [] for stage, _ in self.STAGES}

    def add(self, traj: dict[str, Any], stats: NativeStats) -> None:
        for stage, fmt in self.STAGES:
            for s in _samples(fmt, traj, stats):
                self.rows[stage].append({
                    "id": s["id"],
                    "image": self.images.put(s["image"]["bytes"]),
                    "conversations": [_aguvis_turn(t) for t in s["conversations"]],
                })

    def close(self, stats: NativeStats) -> None:
        for stage, rows in self.rows.items():
            # ASCII: Aguvis opens it with the locale's encoding, whatever that is
            (self.folder / f"{stage}.json").write_text(json.dumps(rows, ensure_ascii=True), encoding="ascii")
            config = {"datasets": [{"json_path": str(self.final / f"{stage}.json"), "images_folder": "images/",
                                    "sampling_strategy": "all"}]}
            (self.folder / f"{stage}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            stats.rows[f"aguvis/{stage}.json"] = len(rows)
        stats.images += len(self.images.written)


class CogAgentWriter:
    def __init__(self, folder: Path, final: Path, image_root: str | None = None) -> None:
        self.folder = folder
        self.images = Images(folder / "images")
        self.root = image_root or str(final)
        self.files = {s: (folder / f"{s}.jsonl").open("w", encoding="utf-8") for s in ("train", "dev")}
        self.counts = Counter[str]()
        self.first: list[str] = []

    def add(self, traj: dict[str, Any], stats: NativeStats) -> None:
        lines = [json.dumps(self._row(s), ensure_ascii=False) + "\n" for s in _samples("cogagent", traj, stats)]
        split = "dev" if int(hashlib.sha256(traj["trajectory_id"].encode()).hexdigest(), 16) % DEV_EVERY == 0 else "train"
        self.files[split].writelines(lines)
        self.counts[split] += len(lines)
        if lines and not self.first:
            self.first = lines

    def _row(self, s: dict[str, Any]) -> dict[str, Any]:
        """CogAgent's documented row (the user turn holds the image path) made
        to survive finetune.py: it opens `messages[-2]['image']`, puts the image
        on `messages[0]`, then sets `messages[-2]['image']` to None, which, in a
        two-message row, is the same message (its README's example loses its
        image so). The assistant turn names the image too and an empty user
        turn follows it: after the reply, masked, where the script appends its
        `<|user|>` end token anyway; its eval splits the reply there."""
        user, assistant = s["messages"]
        path = os.path.join(self.root, "images", self.images.put(s["images"][0]["bytes"]))
        return {"id": s["id"], "messages": [{**user, "image": path}, {**assistant, "image": path},
                                            {"role": "user", "content": "", "image": None}]}

    def close(self, stats: NativeStats) -> None:
        if not self.counts["dev"] and self.first:
            # the configs name a dev file: with no trajectory drawn for it, it
            # repeats the first one's rows (an overlap, not a loss)
            self.files["dev"].writelines(self.first)
            self.counts["dev"] = len(self.first)
        for f in self.files.values():
            f.close()
        stats.rows["cogagent/train.jsonl"], stats.rows["cogagent/dev.jsonl"] = self.counts["train"], self.counts["dev"]
        stats.images += len(self.images.written)


def write_native(
    out_dir: storage.Location, names: list[str], to: str | Path | None = None, image_root: str | None = None
) -> NativeStats:
    """Write each named native export of `out_dir`'s export: to `to` when one
    format is named (else `to/<name>/`), default `<out_dir>/native/<name>/`.
    Each folder is built aside and swapped in whole."""
    names = check_native(names)
    if to is None and storage.is_remote(out_dir):
        raise ValueError("native exports are files a trainer opens by path: give a local --to folder")
    base = Path(to) if to is not None else Path(storage.absolute(out_dir)) / "native"
    targets = {n: (base if to is not None and len(names) == 1 else base / n).resolve() for n in names}
    stats = NativeStats()
    tmps = {n: t.parent / f".{t.name}-{uuid.uuid4().hex[:8]}.tmp" for n, t in targets.items()}
    try:
        writers = {n: _writer(n, tmps[n], targets[n], image_root) for n in names}
        for traj in accepted_trajectories(out_dir):
            for w in writers.values():
                w.add(traj, stats)
        for w in writers.values():
            w.close(stats)
        fs = storage.resolve(str(base))[0]
        for n in names:
            storage.replace_dir(fs, str(tmps[n]), str(targets[n]))
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                storage.delete_dir(storage.resolve(str(tmp))[0], str(tmp))
    return stats


def _writer(name: str, tmp: Path, final: Path, image_root: str | None) -> AguvisWriter | CogAgentWriter:
    tmp.mkdir(parents=True)
    return AguvisWriter(tmp, final) if name == "aguvis" else CogAgentWriter(tmp, final, image_root)
