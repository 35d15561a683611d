"""One text per image (SPEC section 7): where a pool has several texts per
image, only one matched text of each image goes on to sampling.

The choice is the smallest image score u(seed, uid, -1) among the image's
matched rows: a Dask group-by and merge over four small columns of the match
index, so memory stays bounded by partitions.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _core, matchindex
from .balance import uid_keys
from .config import CurateConfig
from .errors import OutputError, quote
from .outdir import Generation, OutDir
from .pool import Partition
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


def select_one_text_per_image(cfg: CurateConfig, parts: list[Partition], generation: Generation) -> None:
    """Among matched rows sharing an image key, only the one with the smallest
    image score competes in sampling; write the others to the generation's
    image_dropped/part=K/ for pass 2. A Dask group-by and merge (a shuffle of
    four small columns of matched rows), so memory stays bounded by partitions.
    Written under a temporary name and published in one rename: pass 2 never
    sees half of it, and a killed run recomputes it."""
    import dask.dataframe as dd

    lay = OutDir.of(cfg)
    target = generation.image_dropped
    if target.exists():
        return
    shards = [str(lay.shard("matches", part)) for part in parts]
    rows = dd.from_map(_scored_images, shards, [part.index for part in parts], seed=cfg.seed)
    best = rows.groupby("image_key")["score"].min(split_out=max(1, rows.npartitions // 8)).rename("best").reset_index()
    merged = rows.merge(best, on="image_key", how="inner")
    losers = merged[merged["score"] > merged["best"]][["part", "row"]]
    tmp = temporary_dir(target)
    try:
        losers.to_parquet(tmp, partition_on=["part"], write_index=False)
    except OSError as e:
        raise OutputError(f"{quote(target)}: cannot write ({os.strerror(e.errno) if e.errno else e})") from e
    publish_dir(tmp, target)


def lost_image(cfg: CurateConfig, generation: Generation, part: Partition, rows: np.ndarray) -> np.ndarray:
    """Which of these matched rows gave their image to another row."""
    where = generation.image_dropped / f"part={part.index}"
    if not cfg.image_column or not where.exists():
        return np.zeros(len(rows), bool)
    return np.isin(rows, pq.read_table(where, columns=["row"]).column(0).to_numpy())
