"""What a curation run is asked to do: one frozen, picklable value that every
stage and every Dask task reads."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from .worldwide import MetadataRef, load_cached

UID = "uid"
AUTO = "auto"  # --id-column default: the pool's `uid` column if it has one, else derived


@dataclass(frozen=True)
class CurateConfig:
    inputs: tuple[str, ...]
    metadata: str
    out: str
    text_column: str = "text"
    id_column: str = AUTO
    lang_column: str | None = None
    columns: tuple[str, ...] | None = None  # passed through to kept/; None: all
    padding: str | None = None  # None: metaclip1, or worldwide for per-language metadata
    t: float = 20_000
    t_en: float = 170_000
    seed: int = 0
    partition_rows: int = 100_000
    device: str = "cpu"
    gpu_reader: str | None = None  # the GPU engine's reader: cudf (default) or pyarrow (read on the host, text copied)
    strict_utf8: bool = False
    keep_matched_ids: bool = False  # also write matched_entry_ids into kept/
    datacomp_subset: str | None = None
    image_column: str | None = None  # several texts per image: keep one per image (docs/semantics.md section 7)
    threads: int = 1  # walk threads per task; parallelism comes from Dask
    tar_text: str = "txt"  # WebDataset tars: the member suffix holding the text, or json:KEY
    verify_inputs: bool = False  # also hash every pool file's contents into the run's identity
    command: str | None = None  # the command line that started this run (the CLI sets it), for the datacard
    match_index: str | None = None  # the match index's directory when not out/matches (balance --out)

    def pass1_identity(self, inputs: list[dict]) -> dict:
        """What pass 1's outputs depend on: a run in the same --out must agree.
        `inputs`: pool.input_identity of the pool's files."""
        return {
            "inputs": inputs,
            "metadata": load_cached(self.metadata_ref).fingerprint,
            "text_column": self.text_column,
            "id_column": self.id_column,
            "lang_column": self.lang_column,
            "padding": load_cached(self.metadata_ref).padding,
            "partition_rows": self.partition_rows,
            "image_column": self.image_column,
            "tar_text": self.tar_text,
        }

    @property
    def metadata_ref(self) -> MetadataRef:
        return MetadataRef(str(Path(self.metadata).resolve()), self.padding)

    @property
    def balance_id(self) -> str:
        """Tags kept/ shards: a rerun with other parameters rewrites them."""
        key = repr((self.t, self.t_en, self.seed, self.columns, self.keep_matched_ids))
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        d = asdict(self)
        d["inputs"] = [x if "://" in x or not Path(x).exists() else str(Path(x).resolve()) for x in self.inputs]
        d["metadata"] = str(Path(self.metadata).resolve())
        d["columns"] = list(self.columns) if self.columns is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CurateConfig":
        return cls(**{**d, "inputs": tuple(d["inputs"]), "columns": tuple(d["columns"]) if d["columns"] else None})
