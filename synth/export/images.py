"""Screenshots of the SFT views as files (`export.images: files`).

By default (`inline`) every Parquet config carries its own copy of each
screenshot's bytes, so each config loads on its own anywhere: `datasets` by
config name (locally or from the Hub), the Hub's viewer, DuckDB, pyarrow. With
`files`, the Parquet SFT views (`sft-aguvis-*`, `sft-cogagent`,
`sft-messages`) instead name a PNG written once per distinct screenshot (named
by its content hash) under `data/images/`, as a plain string path relative to
the dataset root, e.g. `data/images/3f/3fa2...png`. What each reader does with
such a path (read for this, see bench/RESULTS.md):

- LLaMA-Factory (`data/converter.py` `_find_medias`): joins a string image
  with `media_dir`, which defaults to `dataset_dir`, the folder of
  `dataset_info.json`: the dataset root. Works as is.
- ms-swift (`template/vision_utils.py` `load_file`): opens a string path from
  the working directory, else joined with `$ROOT_IMAGE_DIR`. Works with
  `ROOT_IMAGE_DIR=<dataset root>`.
- `datasets` (`load_dataset(root, "sft-messages")`): every row loads, the
  image column is the path string; `Image` does not decode it for you. It is
  a string and not an `Image` on purpose: `Image.decode_example` opens a
  relative path from the working directory, so an `Image` of paths fails on
  access anywhere but the dataset root, and on the Hub always.
- DuckDB: the path joins `read_blob('data/images/*/*.png')` on `filename`.

`steps` keeps its inline `screenshot` (an `Image`, what the Hub's viewer shows
and `synth query` / the native exports read) and `sft-openai` its data URLs
(OpenAI's files must be self-contained), whatever the option.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from synth import storage

ImageStorage = Literal["inline", "files"]
IMAGE_STORAGES: tuple[str, ...] = ("inline", "files")
FOLDER = "images"
"""Under `data/`: `data/images/<2 hex>/<hash>.png`."""


def image_name(png: bytes) -> str:
    """The file a screenshot is stored as, relative to `data/images/`: its
    SHA-256 (24 hex digits, as the native exports name theirs) in a folder
    of its first two, so no folder nears the Hub's 10,000 files per folder."""
    digest = hashlib.sha256(png).hexdigest()[:24]
    return f"{digest[:2]}/{digest}.png"


class ImageStore:
    """Writes each distinct screenshot once under `folder` (the export's
    temporary `data/images/`, swapped in with the rest of `data/`)."""

    def __init__(self, fs: pafs.FileSystem, folder: str) -> None:
        self.fs, self.folder = fs, folder
        self.written: set[str] = set()
        self.bytes = 0

    def put(self, png: bytes) -> str:
        """The path of `png` relative to the dataset root, written if new."""
        name = image_name(png)
        if name not in self.written:
            prefix = storage.join(self.folder, name.split("/", 1)[0])
            storage.makedirs(self.fs, prefix)
            with storage.open_output(self.fs, storage.join(self.folder, name)) as f:
                f.write(png)
            self.written.add(name)
            self.bytes += len(png)
        return f"data/{FOLDER}/{name}"


def path_schema(schema: pa.Schema, image_columns: Iterable[str]) -> pa.Schema:
    """`schema` with each image column (an Image struct, or a list of them) a
    string path (or a list of them)."""
    for col in image_columns:
        i = schema.get_field_index(col)
        kind = pa.list_(pa.string()) if pa.types.is_list(schema.field(i).type) else pa.string()
        schema = schema.set(i, pa.field(col, kind))
    return schema


def to_paths(sample: dict[str, Any], image_columns: Iterable[str], store: ImageStore) -> dict[str, Any]:
    """The sample with its images written to `store` and replaced by their paths."""
    out = dict(sample)
    for col in image_columns:
        value = sample[col]
        if isinstance(value, list):
            out[col] = [store.put(v["bytes"]) for v in value]
        elif value is not None:
            out[col] = store.put(value["bytes"])
    return out


def referenced(rows: Iterable[dict[str, Any]], image_columns: Iterable[str]) -> set[str]:
    """The image paths `rows` of a files-mode view name."""
    cols = list(image_columns)
    found: set[str] = set()
    for row in rows:
        for col in cols:
            value = row.get(col)
            found.update(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    return found


def _is_path(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or (pa.types.is_list(kind) and pa.types.is_string(kind.value_type))


def referenced_files(fs: pafs.FileSystem, root: str) -> set[str]:
    """The image paths (from `root`) the Parquet SFT views under `root/data`
    name; none when their images are inline. Only the image columns are read."""
    from synth.export import formats as sft

    found: set[str] = set()
    for fmt in sft.FORMATS.values():
        if fmt.schema is None or not fmt.image_columns:
            continue
        for path in storage.list_files(fs, storage.join(root, "data", fmt.config), ".parquet"):
            with fs.open_input_file(path) as f:
                shard = pq.ParquetFile(f)
                schema = shard.schema_arrow
                cols = [c for c in fmt.image_columns if c in schema.names and _is_path(schema.field(c).type)]
                if cols:
                    found |= referenced(shard.read(columns=cols).to_pylist(), cols)
    return found
