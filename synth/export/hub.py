"""`synth push`: a run's dataset folder to the Hugging Face Hub.

What goes up is the dataset as `datasets` reads it: `data/` (every config's
shards), the card (`README.md`, whose `configs:` the Hub's viewer follows),
`manifest.json` and LLaMA-Factory's `dataset_info.json`. Staging, the quality
caches and the annotation queue stay home: they are working state, and the
queue holds labelers' session hashes.

The upload is `huggingface_hub`'s own: `create_repo`, then one
`upload_folder` commit that also deletes the repo's old `data/` files, since a
rebuilt run may have a different number of `-of-N` shards and a stale shard
would be read as part of the split. The token comes from `--token`,
`$HF_TOKEN` or `hf auth login`, and is never printed.

An output on an object store (synth.storage) is first copied to a local
temporary folder, only the files that are pushed: `upload_folder` reads local
files, and every byte passes through this machine on its way to the Hub anyway.
"""

from __future__ import annotations

import contextlib
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path

from synth import storage

PUSHED = ["data/**", "README.md", "manifest.json", "dataset_info.json"]
"""What of a run's folder is the dataset (huggingface_hub allow_patterns)."""
IGNORED = ["**/.*", ".*"]


@dataclass(frozen=True)
class PushPlan:
    folder: str
    """The output: a local path or a filesystem URI."""
    files: list[str]
    bytes: int


def plan_push(out_dir: storage.Location) -> PushPlan:
    """The files `push` would upload, checked: shards and a card with configs."""
    from huggingface_hub.utils import filter_repo_objects

    fs, root = storage.resolve(out_dir)
    card = storage.join(root, "README.md")
    if not storage.exists(fs, card) or not storage.is_dir(fs, storage.join(root, "data")):
        raise FileNotFoundError(f"{out_dir}: no dataset card or data/ here; run `synth run PIPELINE` first")
    infos = storage.file_infos(fs, root, hidden=True, recursive=True)
    sizes = {posixpath.relpath(i.path, root): i.size or 0 for i in infos}
    files = list(filter_repo_objects(sorted(sizes), allow_patterns=PUSHED, ignore_patterns=IGNORED))
    if not any(f.startswith("data/") for f in files):
        raise FileNotFoundError(f"{storage.child(out_dir, 'data')}: no shards to push")
    if "configs:" not in storage.read_text(fs, card):
        raise ValueError(
            f"{storage.child(out_dir, 'README.md')}: the card has no `configs:`; rebuild it with `synth run`"
        )
    return PushPlan(str(out_dir), files, sum(sizes[f] for f in files))


def push(
    out_dir: storage.Location,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    revision: str | None = None,
    message: str | None = None,
) -> str:
    """Create the dataset repo if needed and upload the dataset in one
    commit; returns the commit URL."""
    from huggingface_hub import HfApi

    p = plan_push(out_dir)
    fs, root = storage.resolve(out_dir)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    local = storage.is_local(fs)
    with contextlib.nullcontext(root) if local else tempfile.TemporaryDirectory(prefix="synth-push-") as folder:
        if not local:
            storage.download(fs, root, p.files, Path(folder))
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, repo_type="dataset", revision=revision,
            allow_patterns=PUSHED, ignore_patterns=IGNORED, delete_patterns=["data/**"],
            commit_message=message or f"synth: {len(p.files)} files from {posixpath.basename(root.rstrip('/'))}",
        )
    return str(getattr(info, "commit_url", info))
