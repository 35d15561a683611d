"""The output directory of a run: where every output and marker lives, and
how a new balance replaces the previous one.

out/
  .lock                   held by the run writing here (lock.py)
  run.json                what produced this directory: written once the checks passed; refuses a
                          different run once it holds outputs (has_outputs); its config is the
                          visible balance's (rewritten after each switch)
  matches/part-N.arrow    the match index (matchindex.py)
  matches/_part-N.json    pass-1 stats: written last, so it marks the shard complete
  generations/<id>/       one balance of the match index; <id> is CurateConfig.balance_id
    probabilities.npy     p per entry (and probabilities_head.npy: p on head entries only):
                          pass-2 tasks load them from here, so a lost worker loses nothing
    image_dropped/        with --image-column: rows that gave their image to another text
    kept/part-N.parquet   kept rows: the pool's columns + uid
    kept/_part-N.json     pass-2 stats: written after the shard, so it marks it complete
    entry_counts.parquet  entry_id, entry [, lang], count, kept_count (uint64)
    summary.json          written last: the generation is complete when it exists
  current -> generations/<id>        the visible generation, switched in one step
  kept -> current/kept               what readers open: `pq.read_table("out/kept")`
  entry_counts.parquet -> current/entry_counts.parquet
  summary.json -> current/summary.json
  report/                 `gpu-curate report`: plots, head_tail.md, datacard.md (report.py)

Why a symlink: every output of a balance (kept shards, their markers, counts,
summary) is written inside its own generation directory, and `current` is
then replaced by rename(2), which is atomic for a symlink but cannot replace
a non-empty directory. So a reader sees the previous complete run or the
new complete run, never a mix, whenever a run is killed; a marker can only
describe a shard of its own generation; and a failed rebalance leaves the
previous run as it was. Superseded generations are removed after the
switch (an unfinished one stays until then, so rerunning its command
resumes it). A reader that must not see a switch mid-read resolves the link
first (`os.path.realpath("out/kept")`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .partition import Partition
from .storage import remove_tree, replace_symlink

GENERATIONS = "generations"
# Top-level names that resolve through `current`; created before the first switch.
LINKS = ("kept", "entry_counts.parquet", "summary.json")
LEGACY = ("image_dropped",)  # outputs of the layout before generations: removed at the first switch


@dataclass
class Generation:
    """The outputs of one balance (t, seed, ...) of the match index."""

    root: Path

    kept = property(lambda self: self.root / "kept")
    counts = property(lambda self: self.root / "entry_counts.parquet")
    summary = property(lambda self: self.root / "summary.json")
    probabilities = property(lambda self: self.root / "probabilities.npy")
    head_probabilities = property(lambda self: self.root / "probabilities_head.npy")  # p, tail entries zeroed
    image_dropped = property(lambda self: self.root / "image_dropped")

    @property
    def name(self) -> str:
        return self.root.name

    def shard(self, part: Partition) -> Path:
        return self.kept / f"{part.shard}.parquet"

    def marker(self, part: Partition) -> Path:
        """Stats of a finished shard; the leading _ hides it from parquet dataset readers."""
        return self.kept / f"_{part.shard}.json"


@dataclass
class OutDir:
    out: Path
    matches: Path | None = None  # the match index, when it lives in another run's --out (balance --out)

    def __post_init__(self):
        self.out = Path(self.out)
        self.matches = Path(self.matches) if self.matches else self.out / "matches"

    @classmethod
    def of(cls, cfg) -> "OutDir":
        return cls(cfg.out, cfg.match_index)

    run = property(lambda self: self.out / "run.json")
    counts = property(lambda self: self.out / "entry_counts.parquet")
    summary = property(lambda self: self.out / "summary.json")
    kept = property(lambda self: self.out / "kept")
    current = property(lambda self: self.out / "current")

    def shard(self, stage: str, part: Partition) -> Path:
        """matches/part-N.arrow: the match index (matchindex.py)."""
        _only_matches(stage)
        return self.matches / f"{part.shard}.arrow"

    def has_shards(self) -> bool:
        """Whether a run left outputs here (a finished pass-1 partition, or a
        generation: a `balance --out` directory has no match index of its own).
        Until then, --out may take another run; after, a generation of the
        other run could be taken for this one's."""
        return any(self.matches.glob("_part-*.json")) or (self.out / GENERATIONS).is_dir()

    def marker(self, stage: str, part: Partition) -> Path:
        """Stats of a finished match shard; the leading _ hides it from dataset readers."""
        _only_matches(stage)
        return self.matches / f"_{part.shard}.json"

    def generation(self, balance_id: str) -> Generation:
        return Generation(self.out / GENERATIONS / balance_id)

    def current_generation(self) -> Generation | None:
        """The visible (complete) generation, if a balance ever finished here."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        return self.generation(Path(target).name)

    def switch(self, generation: Generation) -> None:
        """Make `generation` (complete: its summary written) the visible one, in one rename."""
        for name in LINKS:
            link, target = self.out / name, f"current/{name}"
            if os.path.islink(link) and os.readlink(link) == target:
                continue
            if os.path.lexists(link) and not os.path.islink(link):
                remove_tree(link)  # a real file or directory from before generations
            replace_symlink(link, target)
        for name in LEGACY:
            remove_tree(self.out / name)
        replace_symlink(self.current, f"{GENERATIONS}/{generation.name}")

    def remove_superseded(self) -> None:
        """Remove every generation but the current one (finished or not)."""
        current = self.current_generation()
        root = self.out / GENERATIONS
        if current is None or not root.is_dir():
            return
        for entry in sorted(root.iterdir()):
            if entry.name != current.name and not entry.name.startswith("."):
                remove_tree(entry)


def _only_matches(stage: str) -> None:
    if stage != "matches":
        raise ValueError(f"{stage!r}: kept shards and markers live in a generation (OutDir.generation(id))")
