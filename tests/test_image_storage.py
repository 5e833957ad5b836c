"""`export.images: files`: the Parquet SFT views name one shared copy of each
screenshot (synth/export/images.py) instead of holding their own.

The same recorded trajectories are exported twice, inline and files; each
reader of the views then reads the files export the way its own code does
(restated from LLaMA-Factory's `data/converter.py` and ms-swift's
`template/vision_utils.py`; Aguvis's and CogAgent's loaders from
test_native_exports.py) and must get every row, with the same image bytes as
the inline export holds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from datasets import Image as HFImage
from datasets import load_dataset

from synth.export import formats as sft

from outputs import record, write_output
from test_native_exports import aguvis_load, cogagent_load

TASKS = [("login-user", 0), ("click-button", 4), ("click-checkboxes", 2)]
VIEWS = {f.config: f.image_columns[0] for f in sft.FORMATS.values() if f.schema is not None and f.image_columns}
"""The Parquet views with images, and their image column."""


@pytest_asyncio.fixture(scope="module")
async def recorded(browser, miniwob_site) -> list:
    out = await record(browser, miniwob_site, TASKS)
    # the same screenshots again under another id: stored once all the same
    return [*out, out[0].model_copy(deep=True, update={"trajectory_id": "login-again"})]


def write(root: Path, trajectories: list, images: str) -> Path:
    """An output as `synth run` leaves it: staging, data/, native/, manifest, card."""
    return write_output(root, trajectories, "images", rows_per_shard=8, native=["aguvis", "cogagent"], images=images)


@pytest.fixture(scope="module")
def outs(recorded, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("images")
    return {mode: write(tmp / mode, recorded, mode) for mode in ("inline", "files")}


def inline_images(root: Path, config: str) -> dict[str, bytes]:
    """Each sample's image bytes in an inline export, by sample id."""
    col = VIEWS[config]
    rows = pq.read_table(root / "data" / config, columns=["id", col]).to_pylist()
    return {r["id"]: (r[col][0] if isinstance(r[col], list) else r[col])["bytes"] for r in rows}


def paths(row: dict, col: str) -> list[str]:
    value = row[col]
    return value if isinstance(value, list) else [value]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_views_name_one_copy_and_the_size_drops_by_their_images(outs):
    inline, files = outs["inline"], outs["files"]
    pngs: dict[str, bytes] = {}
    for config in VIEWS:
        pngs.update({hashlib.sha256(b).hexdigest(): b for b in inline_images(inline, config).values()})
    written = sorted((files / "data/images").rglob("*.png"))
    assert len(written) == len(pngs) < sum(len(inline_images(inline, c)) for c in VIEWS)  # deduplicated
    m = json.loads((files / "manifest.json").read_text())
    assert m["images"] == {"storage": "files", "files": len(pngs), "bytes": sum(map(len, pngs.values()))}
    assert "paths from this folder's root" in (files / "README.md").read_text()
    # steps and the OpenAI JSONL are the same bytes either way
    for config in ("steps", "sft-openai", "trajectories"):
        for p in (inline / "data" / config).iterdir():
            assert p.read_bytes() == (files / "data" / config / p.name).read_bytes(), p
    # the drop: the views' image columns, less the one copy written
    image_columns = sum(
        rg.column(i).total_compressed_size
        for config, col in VIEWS.items()
        for shard in (inline / "data" / config).glob("*.parquet")
        for md in [pq.ParquetFile(shard).metadata]
        for rg in (md.row_group(g) for g in range(md.num_row_groups))
        for i in range(rg.num_columns) if rg.column(i).path_in_schema.split(".")[0] == col
    )
    drop = folder_bytes(inline / "data") - folder_bytes(files / "data")
    expected = image_columns - folder_bytes(files / "data/images")
    assert expected > 0 and abs(drop - expected) < 0.02 * image_columns, (drop, expected)


def test_datasets_loads_every_view_by_name_and_the_paths_hold_the_same_bytes(outs, tmp_path, monkeypatch):
    import datasets

    inline, files = outs["inline"], outs["files"]
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)  # nothing may depend on running in the dataset's folder
    for config, col in VIEWS.items():
        ds = load_dataset(str(files), config, split="train")
        want = inline_images(inline, config)
        assert sorted(ds["id"]) == sorted(want), config  # no row lost
        assert ds.features[col] in (datasets.Value("string"), datasets.List(datasets.Value("string")))
        for row in ds:
            (path,) = paths(row, col)
            assert (files / path).read_bytes() == want[row["id"]]
    steps = load_dataset(str(files), "steps", split="train")
    assert isinstance(steps.features["screenshot"], HFImage) and steps[0]["screenshot"].size[0] > 0


def test_duckdb_joins_the_views_to_the_image_files(outs):
    inline, files = outs["inline"], outs["files"]
    con = duckdb.connect()
    for config, col in VIEWS.items():
        images = f"[{col}]" if col == "image" else col
        rows = con.execute(
            f"""select v.id, b.content from read_parquet('{files}/data/{config}/*.parquet') v,
                unnest({images}) as i(path) join read_blob('{files}/data/images/*/*.png') b
                on b.filename = '{files}/' || i.path"""
        ).fetchall()
        assert dict(rows) == inline_images(inline, config) and len(rows) == len(dict(rows)), config


def llamafactory_images(root: Path) -> list[tuple[str, list[str]]]:
    """LLaMA-Factory: `dataset_info.json`'s `file_name` folder loaded by its
    one file type, each sample's `images` through `_find_medias` (a string is
    joined with `media_dir`, by default `dataset_dir`, when that is a file;
    anything else is kept as it is and opened later from the working dir)."""
    entry = json.loads((root / "dataset_info.json").read_text())[sft.LLAMAFACTORY_DATASET]
    folder = root / entry["file_name"]
    (ext,) = {p.suffix for p in folder.iterdir()}
    ds = load_dataset(ext[1:], data_files=[str(p) for p in sorted(folder.iterdir())], split="train",
                      cache_dir=str(root.parent / "lf-cache"))
    out = []
    for row in ds:
        medias = row[entry["columns"]["images"]]
        assert isinstance(medias[0], str), "a non-string image is not joined with media_dir"
        found = [os.path.join(root, m) if os.path.isfile(os.path.join(root, m)) else m for m in medias]
        out.append((row["id"], found))
    return out


def test_llamafactory_finds_every_image_from_dataset_dir(outs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    want = inline_images(outs["inline"], "sft-messages")
    got = llamafactory_images(outs["files"])
    assert sorted(i for i, _ in got) == sorted(want)
    for sample_id, (path,) in got:
        assert Path(path).read_bytes() == want[sample_id]


def swift_load_file(path: str) -> bytes:
    """ms-swift's `load_file` for a string that is no URL or data URL: from
    the working directory, else joined with $ROOT_IMAGE_DIR."""
    path = path.strip()
    root = os.environ.get("ROOT_IMAGE_DIR")
    if not os.path.exists(path) and root is not None:
        path = os.path.join(root, path)
    with open(os.path.abspath(os.path.expanduser(path)), "rb") as f:
        return f.read()


@pytest.mark.parametrize("config", ["sft-messages", "sft-cogagent"])
def test_ms_swift_opens_every_image_with_root_image_dir(outs, config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROOT_IMAGE_DIR", str(outs["files"]))
    want = inline_images(outs["inline"], config)
    shards = sorted((outs["files"] / "data" / config).glob("*.parquet"))
    rows = load_dataset("parquet", data_files=[str(p) for p in shards], split="train",
                        cache_dir=str(tmp_path / "hf")).to_list()
    assert sorted(r["id"] for r in rows) == sorted(want)
    for row in rows:
        assert [swift_load_file(p) for p in row["images"]] == [want[row["id"]]]


def test_aguvis_and_cogagent_read_the_same_native_files(outs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    native = {mode: root / "native" for mode, root in outs.items()}
    for stage in ("stage1", "stage2"):
        got = {row["id"]: Path(p).read_bytes() for row, (p,) in aguvis_load(
            str(native["files"] / "aguvis" / f"{stage}.yaml"), str(native["files"] / "aguvis"))}
        want = inline_images(outs["inline"], "sft-aguvis-grounding" if stage == "stage1" else "sft-aguvis-planning")
        assert got == want
    splits = cogagent_load(native["files"] / "cogagent", tmp_path / "hf")
    lines = [json.loads(x) for s in ("train", "dev") for x in (native["files"] / "cogagent" / f"{s}.jsonl").open()]
    assert sum(len(splits[s]) for s in ("train", "validation")) == len(lines)
    want = inline_images(outs["inline"], "sft-cogagent")
    assert {r["id"] for r in lines} == set(want)
    for r in lines:
        assert Path(r["messages"][0]["image"]).read_bytes() == want[r["id"]]


def test_push_uploads_the_image_files_and_the_copy_is_self_contained(outs, tmp_path, monkeypatch):
    import datasets
    from hub_server import HubServer, online

    from synth.export import hub

    files = outs["files"]
    with HubServer({"hf_images": "me"}) as server:
        online(monkeypatch, server)
        hub.push(files, "me/images", token="hf_images")
        pushed = server.state.files("me/images")
    copy = tmp_path / "repo"
    for f, data in pushed.items():
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        (copy / f).write_bytes(data)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    for config, col in VIEWS.items():
        rows = load_dataset(str(copy), config, split="train")
        want = inline_images(outs["inline"], config)
        assert {r["id"]: (copy / paths(r, col)[0]).read_bytes() for r in rows} == want
    # an output missing a named image is refused before anything is sent
    broken = tmp_path / "broken"
    shutil.copytree(files, broken, ignore=shutil.ignore_patterns("staging", "native"))
    next((broken / "data/images").rglob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="1 image files the SFT views name are missing"):
        hub.plan_push(broken)
