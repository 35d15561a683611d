"""A partition: the unit of work of both passes (one Dask task each)."""

from __future__ import annotations

from dataclasses import dataclass

from .webdataset import DEFAULT_TAR_TEXT


@dataclass(frozen=True)
class Partition:
    """A slice of one pool file; its index names its output shards."""

    index: int
    path: str
    name: str  # path relative to the pool's common root: the derived-uid prefix
    format: str
    first_row: int  # row number in the file of the partition's first row
    num_rows: int | None  # None: to the end of the file
    byte_range: tuple[int, int] | None = None  # txt/tsv: the bytes of whole lines this partition reads
    tar_text: str = DEFAULT_TAR_TEXT  # tar: the member (or json key) holding the text

    @property
    def shard(self) -> str:
        return f"part-{self.index:06d}"
