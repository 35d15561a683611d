"""Online rebalancing: which rows a data loader uses, epoch by epoch, from a
finished run's counts and match index, without running anything again.

    rb = gpu_curate.Rebalancer.open("curated/")
    mask = rb.keep(uids, entry_ids, epoch=3)        # one batch -> NumPy bool
    for uids in rb.kept_uids(epoch=3):              # a whole epoch, one index shard at a time
        ...

The decision is docs/semantics.md section 7's, with the seed of the epoch: epoch None
uses the run's seed (so `kept_uids(t=T, seed=S)` is exactly what
`gpu-curate balance --t T --seed S` keeps), epoch e >= 0 uses
`epoch_seed(seed, e) = mix64(mix64(seed ^ 0xd1b54a32d192ed03) ^ e)`
(kernels/sample.cuh). Memory: the per-entry counts and probabilities (16
bytes an entry), plus what the caller passes; `kept_uids` holds one index
shard at a time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import _core, matchindex
from .balance import Balancing, balancing, keep_mask, lang_ranges, uid_keys
from .config import CurateConfig
from .fs import local_out
from .errors import InputError
from .images import IMAGE_ENTRY, dropped_rows, image_key_column, write_image_losers
from .outdir import OutDir
from .results import MatchResult
from .storage import read_json


class Rebalancer:
    """Keep decisions of a finished run (`gpu-curate curate --out OUT`) for
    any t (or t_en), seed and epoch. Build it with `Rebalancer.open(OUT)`."""

    def __init__(
        self,
        out: Path,
        counts: np.ndarray,
        ranges: dict[str, tuple[int, int]] | None,
        t: float,
        t_en: float,
        seed: int,
        image_column: str | None,
    ):
        self.out, self.counts, self.ranges = Path(out), counts, ranges
        self.t, self.t_en, self.seed, self.image_column = t, t_en, int(seed), image_column
        self._balancing: Balancing = balancing(counts, t, t_en, ranges)

    @classmethod
    def open(cls, out: str | Path, t: float | None = None, t_en: float | None = None, seed: int | None = None):
        """The run in `out` (its entry counts and run.json), with its own t,
        t_en and seed unless given here."""
        lay = OutDir(local_out(out, "Rebalancer.open"))
        if not lay.counts.exists() or not lay.run.exists():
            raise InputError(f"{lay.out}: no finished pass 1 here (run `gpu-curate curate` first)")
        cfg = CurateConfig.from_json(read_json(lay.run)["config"])
        names = pq.read_schema(lay.counts).names
        table = pq.read_table(lay.counts, columns=["count", *(["lang"] if "lang" in names else [])])
        rb = cls(
            lay.out,
            table.column("count").to_numpy(),
            lang_ranges(table),
            cfg.t,
            cfg.t_en,
            cfg.seed,
            cfg.image_column,
        )
        return rb.with_params(t=t, t_en=t_en, seed=seed)

    @property
    def _matches(self) -> Path:
        """The match index: OUT/matches, or the one a `balance --out` directory reads."""
        config = read_json(OutDir(self.out).run)["config"]
        return OutDir(self.out, config.get("match_index")).matches

    @property
    def worldwide(self) -> bool:
        return self.ranges is not None

    @property
    def p(self) -> np.ndarray:
        """Keep probability per entry id (docs/semantics.md section 6), float64."""
        return self._balancing.p

    @property
    def thresholds(self) -> dict[str, float | None] | None:
        """Per-language t of a worldwide run (None for one list)."""
        return self._balancing.thresholds

    def with_params(self, t: float | None = None, t_en: float | None = None, seed: int | None = None) -> "Rebalancer":
        """The same run with another t (t_en for worldwide runs) or seed: p
        is recomputed in memory from the counts (nothing is matched again)."""
        if t is not None and self.worldwide:
            raise InputError(f"{self.out}: a worldwide run is balanced by t_en (per-language thresholds), not t")
        if t is None and t_en is None and seed is None:
            return self
        return Rebalancer(
            self.out,
            self.counts,
            self.ranges,
            self.t if t is None else t,
            self.t_en if t_en is None else t_en,
            self.seed if seed is None else seed,
            self.image_column,
        )

    def epoch_seed(self, epoch: int | None) -> int:
        """The sampling seed of `epoch` (the run's seed for None)."""
        if epoch is None:
            return self.seed
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise InputError(f"epoch must be an integer >= 0 or None, got {epoch!r}")
        return int(_core.epoch_seed(self.seed, int(epoch)))

    def keep(self, uids, entry_ids, epoch: int | None = None, image_keys=None) -> np.ndarray:
        """Which rows of a batch to use in `epoch`: NumPy bool, one per row.

        uids: Arrow array, NumPy array or list of str or int (the run's uids).
        entry_ids: the rows' matched entry ids: an Arrow list array (the index's
        `matched_entry_ids`), a CSR pair (offsets, ids), or a list of lists.
        image_keys: for runs with --image-column, the rows' image column
        values. Among rows of this batch that share an image and match
        something, only the one with the smallest image score can be kept;
        this equals the whole pool's one-text-per-image choice only when the
        batch holds every matched text of each of its images (e.g. whole index
        shards, or batches grouped by image). Without image_keys, every row is
        decided on its own."""
        keys = _uid_keys(uids)
        offsets, ids = _csr(entry_ids, len(keys), len(self.p))
        seed = self.epoch_seed(epoch)
        keep = keep_mask(MatchResult(offsets, ids), keys, self.p, seed)
        if image_keys is not None:
            keep &= _image_winners(keys, np.diff(offsets) > 0, image_keys, seed)
        return keep

    def kept_uids(
        self,
        t: float | None = None,
        t_en: float | None = None,
        seed: int | None = None,
        epoch: int | None = None,
        workdir: str | Path | None = None,
    ) -> Iterator[pa.Array]:
        """The uids kept in `epoch`, one Arrow array per match-index shard (in
        shard order; `pa.concat_arrays(list(...))` for all at once). With
        epoch None, t, seed: the very uids `gpu-curate balance --t t --seed
        seed` writes to kept/. Runs with --image-column first choose one text
        per image with the epoch's seed: a Dask group-by over the index (the
        pipeline's), whose losers go to a temporary folder under `workdir`."""
        rb = self.with_params(t=t, t_en=t_en, seed=seed)
        seed_e = rb.epoch_seed(epoch)
        shards = sorted(self._matches.glob("part-*" + matchindex.SUFFIX))
        parts = [int(s.stem.split("-")[1]) for s in shards]
        with tempfile.TemporaryDirectory(dir=workdir, prefix="gpu_curate_images_") as tmp:
            losers = Path(tmp) / "losers"
            if self.image_column and shards:
                write_image_losers([str(s) for s in shards], parts, seed_e, losers)
            for part, shard in zip(parts, shards):
                index = matchindex.read(shard)
                keep = keep_mask(matchindex.match_result(index), matchindex.uid_keys(index), rb.p, seed_e)
                if self.image_column:
                    keep &= ~np.isin(index.column(matchindex.ROW).to_numpy(), dropped_rows(losers, part))
                yield matchindex.uids(index, keep)


def _uid_keys(uids) -> np.ndarray:
    """Sampling keys of a batch's uids, as the pipeline computes them."""
    if isinstance(uids, np.ndarray) and uids.dtype.kind in "iu":
        return uids.astype(np.int64, copy=False).view(np.uint64)
    arr = uids if isinstance(uids, (pa.Array, pa.ChunkedArray)) else pa.array(list(uids))
    if arr.null_count:  # first: a batch of nulls alone has Arrow type null
        raise InputError(f"uids: row {_first(arr.is_null())} is null")
    if not (pa.types.is_integer(arr.type) or pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise InputError(f"uids must be strings or integers, got Arrow type {arr.type}")
    return uid_keys(arr)


def _csr(entry_ids, n_rows: int, n_entries: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets from 0, int32 ids) of a batch's entry ids, checked: the
    keep kernel indexes p with them."""
    if isinstance(entry_ids, tuple) and len(entry_ids) == 2:
        offsets, ids = np.asarray(entry_ids[0], np.int64), np.asarray(entry_ids[1])
        if len(offsets) == 0 or offsets[0] < 0 or offsets[-1] > len(ids) or np.any(np.diff(offsets) < 0):
            raise InputError("entry_ids: CSR offsets must be non-decreasing, within the ids, one more than the rows")
    else:
        arr = entry_ids if isinstance(entry_ids, (pa.Array, pa.ChunkedArray)) else _list_array(entry_ids)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise InputError(f"entry_ids must be a list array, a CSR (offsets, ids) pair or lists; got {arr.type}")
        if arr.null_count:  # a null list matches nothing
            lengths = pc.list_value_length(arr).fill_null(0).to_numpy()
            offsets, ids = np.concatenate([[0], np.cumsum(lengths)]), pc.list_flatten(arr).to_numpy()
        else:  # the offsets and values in place: offsets of a slice index the whole child
            offsets, ids = arr.offsets.to_numpy().astype(np.int64, copy=False), arr.values.to_numpy()
    if ids.dtype.kind not in "iu":
        raise InputError(f"entry_ids must be integers, got {ids.dtype}")
    if len(offsets) != n_rows + 1:
        raise InputError(f"entry_ids: {len(offsets) - 1} rows, but {n_rows} uids")
    ids = ids[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    if len(ids) and (ids.min() < 0 or ids.max() >= n_entries):
        pos = int(np.argmax((ids < 0) | (ids >= n_entries)))
        row = int(np.searchsorted(offsets, pos, side="right")) - 1
        raise InputError(f"entry_ids: row {row} has entry id {ids[pos]}, not one of this run's {n_entries} entries")
    return offsets, ids.astype(np.int32, copy=False)


def _list_array(lists) -> pa.Array:
    try:
        return pa.array(list(lists), pa.large_list(pa.int64()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
        raise InputError(f"entry_ids: not lists of integer entry ids ({e})") from None


def _first(mask) -> int:
    return int(pc.index(mask, True).as_py())


def _image_winners(keys: np.ndarray, matched: np.ndarray, image_keys, seed: int) -> np.ndarray:
    """False for matched rows that give their image to another matched row of
    this batch with a smaller image score u(seed, uid, -1) (images.py's rule)."""
    images = image_keys if isinstance(image_keys, (pa.Array, pa.ChunkedArray)) else pa.array(list(image_keys))
    images = images.combine_chunks() if isinstance(images, pa.ChunkedArray) else images
    if len(images) != len(keys):
        raise InputError(f"image_keys: {len(images)} rows, but {len(keys)} uids")
    hashed = image_key_column(images)
    rows = np.flatnonzero(matched & hashed.is_valid().to_numpy(zero_copy_only=False))
    image = hashed.fill_null(0).to_numpy()[rows]
    score = _core.uniforms(np.uint64(seed), keys[rows], np.full(len(rows), IMAGE_ENTRY, np.int32))
    order = np.lexsort((score, image))  # by image, then score: each image's best comes first
    starts = np.r_[True, image[order][1:] != image[order][:-1]]
    best = score[order][np.flatnonzero(starts)[np.cumsum(starts) - 1]]
    winners = np.ones(len(keys), bool)
    winners[rows[order]] = score[order] <= best  # ties keep every row at the best score, as images.py does
    return winners
