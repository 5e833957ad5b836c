"""The dataset card (`README.md`) and `manifest.json` written beside the shards."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from typing import Any

import yaml

from synth import __version__
from synth.export import formats as sft
from synth.export.shards import ExportStats

CONFIGS = {
    "trajectories": "One row per trajectory: task, source, instruction, verdict, status and the steps without images.",
    "steps": "One row per step: the screenshot (an Image) and page state before the action, the action and its target element.",
}
LIBRARIES = ("playwright", "ray", "pyarrow", "datasets", "duckdb", "miniwob", "pydantic")


def versions() -> dict[str, str]:
    out = {"synth": __version__, "python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def manifest(name: str, stats: ExportStats, config: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    c = stats.counts
    accepted = c["status"].get("accepted", 0)
    return {
        "name": name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_ids": sorted(stats.run_ids),
        "trajectories": stats.trajectories,
        "accepted": accepted,
        "rejected": c["status"].get("rejected", 0),
        "steps": stats.steps,
        "accepted_steps": stats.accepted_steps,
        "duplicate_ids_skipped": stats.duplicates_skipped,
        "by_source": dict(c["source"]),
        "accepted_by_source": dict(c["accepted_by_source"]),
        "by_template": dict(sorted(c["template"].items())),
        "accepted_by_template": dict(sorted(c["accepted_by_template"].items())),
        "by_site": dict(c["site"]),
        "reject_reasons": dict(c["reject_reason"]),
        "cost_usd": round(stats.cost_usd, 6),
        "cost_usd_by_source": {k: round(v, 6) for k, v in stats.cost_by_source.items()},
        "sft_samples": dict(stats.sft_samples),
        "sft_left_out": {n: dict(sorted(c.items())) for n, c in stats.sft_left_out.items()},
        "native": dict(stats.native),
        "images": dict(stats.images),
        "versions": versions(),
        "config": config,
        **(extra or {}),
    }


def card(m: dict[str, Any], license: str = "apache-2.0") -> str:
    sft_names = [n for n in m.get("sft_samples", {}) if n in sft.FORMATS]
    header = {
        "license": license,
        "pretty_name": f"synth: {m['name']}",
        "tags": ["web-agents", "gui-agents", "trajectories", "synthetic", "browser", *sorted(m["by_site"])],
        "task_categories": ["image-text-to-text"],
        "size_categories": [_size_category(m["steps"])],
        "configs": [
            {
                "config_name": name,
                "data_files": [{"split": "train", "path": f"data/{name}/train-*.parquet"}],
                **({"default": True} if name == "trajectories" else {}),
            }
            for name in CONFIGS
        ]
        + [
            {"config_name": sft.FORMATS[name].config, "data_files": [{"split": "train", "path": sft.FORMATS[name].data_files}]}
            for name in sft_names
            # `datasets` picks one builder for a whole repo (from the first
            # config's files), so a JSONL folder among Parquet configs would be
            # read as Parquet and fail: JSONL views are files, not configs.
            if sft.FORMATS[name].extension == "parquet"
        ],
    }
    jsonl = [n for n in sft_names if sft.FORMATS[n].extension != "parquet"]
    if jsonl:
        # not configs (see above): the YAML says how each loads instead
        header["jsonl_files"] = [
            {"name": sft.FORMATS[n].config, "data_files": sft.FORMATS[n].data_files, "load": _jsonl_load(n)}
            for n in jsonl
        ]
    rows = "\n".join(
        f"| `{t}` | {n} | {m['accepted_by_template'].get(t, 0)} |" for t, n in m["by_template"].items()
    )
    configs = "\n".join(f"- `{k}`: {v}" for k, v in CONFIGS.items())
    configs += "".join(
        f"\n- `{sft.FORMATS[n].config}` ({m['sft_samples'][n]} samples{_left_out(m, n)}, `{sft.FORMATS[n].data_files}`): "
        f"{sft.FORMATS[n].description}"
        for n in sft_names
    )
    reasons = "\n".join(f"| {r} | {n} |" for r, n in sorted(m["reject_reasons"].items(), key=lambda x: -x[1])) or "| (none) | 0 |"
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# {m['name']}

Web-agent trajectories made by synth {m['versions']['synth']}:
each one recorded step by step in a real Chromium (screenshot and accessibility
snapshot before every action), then judged by the task's own judge. Rejected
trajectories are kept with their reason; filter on `status = 'accepted'` to train.

## Configs

{configs}
{_image_files(m)}
{_example(sft_names)}

{_training(sft_names)}## Counts

{m['trajectories']} trajectories ({m['accepted']} accepted, {m['rejected']} rejected), {m['steps']} steps.
By source: {', '.join(f'{k} {v} ({m["accepted_by_source"].get(k, 0)} accepted)' for k, v in m['by_source'].items())}.

| template | trajectories | accepted |
|---|---|---|
{rows}

| rejection reason | trajectories |
|---|---|
{reasons}

## How it was made

Sources: programmatic Playwright solvers acting through synth's `BrowserEnv`
(every action is a trusted mouse or keyboard event; coordinates are normalised
to the screenshot). MiniWoB++ tasks are judged by MiniWoB's own reward code
(raw reward, not time-discounted). Runs: {', '.join(m['run_ids'])}.

Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.

Pipeline configuration:

```json
{json.dumps(m['config'], indent=2, default=str)}
```
"""


def _jsonl_load(name: str) -> str:
    return f'load_dataset(ROOT, data_files="{sft.FORMATS[name].data_files}", split="train")'


def _example(names: list[str]) -> str:
    """Code that runs as written in the dataset's folder (tests execute it);
    ROOT may be the dataset's Hub id instead."""
    lines = [
        "from pathlib import Path",
        "",
        "from datasets import load_dataset",
        "",
        "ROOT = str(Path.cwd())  # run in this folder; or the dataset's id on the Hub",
        'steps = load_dataset(ROOT, "steps", split="train")  # each config above, by its name',
    ]
    lines += [f"{sft.FORMATS[n].config.replace('-', '_')} = {_jsonl_load(n)}  # JSONL files, not a config"
              for n in names if sft.FORMATS[n].extension != "parquet"]
    return "```python\n" + "\n".join(lines) + "\n```"


def _image_files(m: dict[str, Any]) -> str:
    """What the views' image columns hold when the screenshots are files
    (`export.images: files`, synth/export/images.py); nothing when inline."""
    images = m.get("images") or {}
    if images.get("storage") != "files":
        return ""
    return (
        f"\nThe `sft-*` Parquet configs name their screenshots instead of holding them: `image`/`images` are paths "
        f"from this folder's root to PNG files under `data/images/` ({images['files']} files, "
        f"{images['bytes'] / 2**20:.1f} MiB, each distinct screenshot once). `datasets` gives the path as a string "
        "(open it under the dataset root, or `hf_hub_download` it from the Hub); LLaMA-Factory finds them from "
        "`dataset_dir`, ms-swift with `ROOT_IMAGE_DIR=<this folder>`. `steps` holds every screenshot itself.\n"
    )


def _left_out(m: dict[str, Any], name: str) -> str:
    """"; 12 steps left out: select: ... (3), ..." for a view that left steps out."""
    reasons = m.get("sft_left_out", {}).get(name) or {}
    if not reasons:
        return ""
    return f"; {sum(reasons.values())} steps left out: " + ", ".join(f"{r} ({n})" for r, n in reasons.items())


def _training(names: list[str]) -> str:
    """How to train on the `sft-*` configs, for the ones exported."""
    if not names:
        return ""
    lines = [
        "## Training",
        "",
        "The `sft-*` configs hold only accepted trajectories: one sample per step whose action",
        "succeeded, its screenshot included. Texts come from the record: the instruction, the",
        "step's planning text (its monologue, else a low-level instruction written from the action and its",
        "target), the action, and the",
        "target element's name and box. Columns `trajectory_id` and `step_index` join a sample",
        "to `steps`.",
        "",
    ]
    if "messages" in names:
        lines += [
            "- ms-swift: `swift sft --dataset data/sft-messages/train-00000-of-0000N.parquet ...` (each shard file;",
            "  `messages` + `images`, read by file extension).",
            f"- LLaMA-Factory: `dataset_dir: <this folder>` and `dataset: {sft.LLAMAFACTORY_DATASET}`;",
            "  `dataset_info.json` here points it at `data/sft-messages` (sharegpt formatting, role/content tags).",
        ]
    if "cogagent" in names:
        lines.append(
            "- CogAgent-9B: `data/sft-cogagent` (`messages` user/assistant in CogAgent's prompt format, one image"
            " each; ms-swift reads it like `sft-messages` and adds the `<image>` tag CogAgent's text leaves out)."
        )
    if "aguvis-grounding" in names or "aguvis-planning" in names:
        lines.append(
            "- Aguvis: `data/sft-aguvis-grounding` (stage 1) and `data/sft-aguvis-planning` (stage 2) have its"
            " `image` + `conversations` (from/value/recipient/end_turn) rows."
        )
    if "openai" in names:
        lines.append(
            "- OpenAI fine-tuning: upload `data/sft-openai/train-*.jsonl` as they are (images are data URLs). These"
            " are files, not a config of this dataset (the card's YAML `jsonl_files` says so): "
            f"`{_jsonl_load('openai')}` reads them."
        )
    return "\n".join(lines) + "\n\n"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"

