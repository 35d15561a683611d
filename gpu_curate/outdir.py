"""The output directory of a run: where every output and marker lives.

out/
  run.json              what produced this directory: written once the checks passed; refuses a
                        different run once pass 1 wrote a shard
  matches/part-N.parquet  row, uid, matched_entry_ids of every matched row
  matches/_part-N.json    pass-1 stats: written last, so it marks the shard complete
  entry_counts.parquet  entry_id, entry [, lang], count, kept_count (uint64; kept_count rewritten by each balance)
  image_dropped/        with --image-column: rows that gave their image to another text
  kept/part-N.parquet     kept rows: the pool's columns + uid
  kept/_part-N.json       pass-2 stats, tagged with the balance parameters
  summary.json          written last: the run is complete when it exists
  report/               `gpu-curate report`: plots, head_tail.md, datacard.md (report.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .pool import Partition


@dataclass
class OutDir:
    out: Path

    def __post_init__(self):
        self.out = Path(self.out)

    run = property(lambda self: self.out / "run.json")
    counts = property(lambda self: self.out / "entry_counts.parquet")
    summary = property(lambda self: self.out / "summary.json")
    image_dropped = property(lambda self: self.out / "image_dropped")

    def shard(self, stage: str, part: Partition) -> Path:
        """matches/part-N.arrow (the match index, matchindex.py) or kept/part-N.parquet."""
        return self.out / stage / f"{part.shard}{'.arrow' if stage == 'matches' else '.parquet'}"

    def has_shards(self) -> bool:
        """Whether pass 1 finished a partition here: until then, --out may take another run."""
        return any((self.out / "matches").glob("_part-*.json"))

    def marker(self, stage: str, part: Partition) -> Path:
        """Stats of a finished shard; the leading _ hides it from parquet dataset readers."""
        return self.out / stage / f"_{part.shard}.json"
