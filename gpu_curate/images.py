"""One text per image (docs/semantics.md section 7): where a pool has several texts per
image, only one matched text of each image goes on to sampling.

The choice is the smallest image score u(seed, uid, -1) among the image's
matched rows: a Dask group-by and merge over four small columns of the match
index, so memory stays bounded by partitions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _core, matchindex
from .balance import uid_keys
from .config import CurateConfig
from .errors import OutputError
from .fs import quote_path
from .outdir import Generation, OutDir
from .partition import Partition
from .storage import publish_dir, temporary_dir

IMAGE_ENTRY = -1  # a row's image score is u(seed, uid, -1): no entry has that id


def image_key_column(images: pa.Array) -> pa.Array:
    """64-bit image keys by the uid rule (integers as they are, strings and
    bytes hashed), null where the row has no image."""
    if pa.types.is_binary(images.type) or pa.types.is_large_binary(images.type):
        images = images.cast(pa.large_string(), safe=False)  # hashing reads the bytes; no decoding
    keys = uid_keys(images.fill_null(0 if pa.types.is_integer(images.type) else ""))
    return pa.array(keys, pa.uint64(), mask=images.is_null().to_numpy(zero_copy_only=False))


def _scored_images(shard: str, part: int, seed: int):
    """part, row, image_key, score of a match shard's rows that have an image."""
    index = matchindex.read(shard)
    has_image = index.column(matchindex.IMAGE_KEY).is_valid().to_numpy(zero_copy_only=False)
    keys = matchindex.uid_keys(index)[has_image]
    score = _core.uniforms(np.uint64(seed), keys, np.full(len(keys), IMAGE_ENTRY, np.int32))
    table = index.select([matchindex.ROW, matchindex.IMAGE_KEY]).filter(pa.array(has_image))
    table = table.append_column("part", pa.array(np.full(len(keys), part, np.int32)))
    return table.append_column("score", pa.array(score)).to_pandas()


def write_image_losers(shards: list[str], part_indices: list[int], seed: int, directory: Path) -> None:
    """Among matched rows sharing an image key, only the one with the smallest
    image score competes in sampling; write the others (part, row) to
    directory/part=K/. A Dask group-by and merge (a shuffle of four small
    columns of matched rows), so memory stays bounded by partitions."""
    import dask.dataframe as dd

    rows = dd.from_map(_scored_images, shards, part_indices, seed=seed)
    best = rows.groupby("image_key")["score"].min(split_out=max(1, rows.npartitions // 8)).rename("best").reset_index()
    merged = rows.merge(best, on="image_key", how="inner")
    losers = merged[merged["score"] > merged["best"]][["part", "row"]]
    losers.to_parquet(directory, partition_on=["part"], write_index=False)


def dropped_rows(directory: Path, part_index: int) -> np.ndarray:
    """Rows of partition `part_index` that write_image_losers wrote to `directory`."""
    where = Path(directory) / f"part={part_index}"
    return pq.read_table(where, columns=["row"]).column(0).to_numpy() if where.exists() else np.zeros(0, np.int64)


def select_one_text_per_image(cfg: CurateConfig, parts: list[Partition], generation: Generation) -> None:
    """write_image_losers for pass 2, into the generation's image_dropped/:
    written under a temporary name and published in one rename, so pass 2
    never sees half of it, and a killed run computes it again."""
    lay = OutDir.of(cfg)
    target = generation.image_dropped
    if target.exists():
        return
    tmp = temporary_dir(target)
    try:
        write_image_losers([str(lay.shard("matches", part)) for part in parts], [p.index for p in parts], cfg.seed, tmp)
    except OSError as e:
        raise OutputError(f"{quote_path(target)}: cannot write ({os.strerror(e.errno) if e.errno else e})") from e
    publish_dir(tmp, target)


def lost_image(cfg: CurateConfig, generation: Generation, part: Partition, rows: np.ndarray) -> np.ndarray:
    """Which of these matched rows gave their image to another row."""
    if not cfg.image_column:
        return np.zeros(len(rows), bool)
    return np.isin(rows, dropped_rows(generation.image_dropped, part.index))
