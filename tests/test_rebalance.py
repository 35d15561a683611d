"""gpu_curate.Rebalancer: epoch-free decisions equal `gpu-curate balance`,
epochs are independent draws with the right keep rates, batches of any form
decide the same, bad batches are refused with the row named."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared
from hypothesis import given
from hypothesis import strategies as st
from test_pipeline import curate_images, image_pool, make_pool, run

import gpu_curate as gc
from gpu_curate import _core, demo_data, matchindex
from gpu_curate.balance import uid_keys
from gpu_curate.pipeline import CurateConfig, balance, curate

M64 = (1 << 64) - 1


def all_kept(rb, **kw) -> list:
    return sorted(pa.concat_arrays(list(rb.kept_uids(**kw))).to_pylist())


def kept_uids_on_disk(out) -> list:
    return sorted(pq.read_table(out / "kept", columns=["uid"]).column("uid").to_pylist())


def shards(out):
    return [matchindex.read(p) for p in sorted((out / "matches").glob("part-*.arrow"))]


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """A run of the demo pool with derived uids (<file>:<row>), several partitions."""
    out = tmp_path_factory.mktemp("rebalance") / "out"
    run(demo_data.POOL, out, partition_rows=800)
    return out


# -- equal to `gpu-curate balance` ------------------------------------------------------
def test_epoch_free_kept_uids_equal_the_run(derived):
    assert all_kept(gc.Rebalancer.open(derived)) == kept_uids_on_disk(derived)


@pytest.mark.parametrize("uids", ["derived", "pool"])
def test_kept_uids_equal_balance_with_new_t_and_seed(tmp_path, uids):
    pool = make_pool(tmp_path / "pool", n_files=2) if uids == "pool" else demo_data.POOL
    run(pool, tmp_path / "out", partition_rows=700)
    rb = gc.Rebalancer.open(tmp_path / "out")
    for t, seed in ((2, 3), (40, 11)):
        got = all_kept(rb, t=t, seed=seed)
        balance(tmp_path / "out", t=t, seed=seed, progress=False)
        assert got == kept_uids_on_disk(tmp_path / "out") and len(got) > 0
        assert all_kept(rb.with_params(t=t, seed=seed)) == got


def test_kept_uids_equal_balance_with_one_text_per_image(tmp_path):
    curate_images(tmp_path, "out", image_pool(tmp_path / "pool.parquet"), t=100, seed=0, partition_rows=700)
    rb = gc.Rebalancer.open(tmp_path / "out")
    got = all_kept(rb, t=50, seed=4)
    summary = balance(tmp_path / "out", t=50, seed=4, progress=False)
    assert got == kept_uids_on_disk(tmp_path / "out") and summary["rows_same_image_dropped"] > 0


def test_kept_uids_equal_balance_worldwide(tmp_path):
    md = tmp_path / "md"
    md.mkdir()
    (md / "en.txt").write_bytes(shared("metadata/wordnet30_synset_heads.txt").read_bytes())
    (md / "nl.txt").write_bytes(shared("metadata/nl_wordfreq_100k.txt").read_bytes())
    en = shared("captions/coco_val2017_en.txt").read_text(encoding="utf-8").split("\n")[:1500]
    nl = shared("captions/dutch_descriptions_nl.txt").read_text(encoding="utf-8").split("\n")[:1500]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": en + nl, "lang": ["en"] * len(en) + ["nl"] * len(nl)}), pool)
    out = str(tmp_path / "o")
    curate(CurateConfig((str(pool),), str(md), out, lang_column="lang", t_en=30, partition_rows=1000), progress=False)
    rb = gc.Rebalancer.open(tmp_path / "o", t_en=10)
    got = all_kept(rb, seed=5)
    summary = balance(tmp_path / "o", t_en=10, seed=5, progress=False)
    assert got == kept_uids_on_disk(tmp_path / "o") and 0 < len(got) < summary["rows_matched"]
    assert rb.thresholds == summary["thresholds"]
    with pytest.raises(gc.InputError, match="t_en"):
        rb.with_params(t=5)


# -- batches --------------------------------------------------------------------------
def test_batch_decisions_equal_the_epoch(derived):
    """keep() on each shard's uids and ids, in every accepted form, gives the shard's part of kept_uids."""
    rb = gc.Rebalancer.open(derived, t=3)
    for epoch in (None, 0, 5):
        per_shard = list(rb.kept_uids(epoch=epoch))
        for index, expected in zip(shards(derived), per_shard):
            uids = matchindex.uids(index)
            ids = index.column(matchindex.IDS)
            res = matchindex.match_result(index)
            forms = [
                (uids, ids),
                (uids.to_pylist(), ids.to_pylist()),
                (np.array(uids.to_pylist(), object), (res.offsets, res.entry_ids)),
                (uids.cast(pa.large_string()), ids.cast(pa.list_(pa.int32()))),
            ]
            for u, e in forms:
                keep = rb.keep(u, e, epoch=epoch)
                assert keep.dtype == bool and uids.filter(pa.array(keep)).equals(expected)


def test_batch_of_sliced_arrow_and_integer_uids(derived):
    rb = gc.Rebalancer.open(derived)
    index = shards(derived)[0]
    ids = index.column(matchindex.IDS).combine_chunks()
    whole = rb.keep(np.arange(len(ids)), ids, epoch=2)
    part = rb.keep(pa.array(np.arange(len(ids)))[10:60], ids[10:60], epoch=2)
    assert np.array_equal(part, whole[10:60])
    assert np.array_equal(rb.keep(list(range(10, 60)), ids[10:60].to_pylist(), epoch=2), whole[10:60])
    with_null = rb.keep([1, 2], pa.array([None, ids[0].as_py()], pa.list_(pa.int32())))
    assert not with_null[0]  # a null list matches nothing


def test_batch_image_choice_on_whole_images(tmp_path):
    """With image keys of whole images (here: the whole pool in one batch), keep()
    makes the pipeline's one-text-per-image choice."""
    pool = image_pool(tmp_path / "pool.parquet")
    curate_images(tmp_path, "out", pool, t=100, seed=2)
    rb = gc.Rebalancer.open(tmp_path / "out")
    (index,) = shards(tmp_path / "out")
    urls = pq.read_table(pool).column("url").take(index.column(matchindex.ROW))
    uids, ids = index.column(matchindex.UID), index.column(matchindex.IDS)
    for epoch in (None, 1):
        keep = rb.keep(uids, ids, epoch=epoch, image_keys=urls)
        assert sorted(uids.filter(pa.array(keep)).to_pylist()) == all_kept(rb, epoch=epoch)
        assert not np.array_equal(keep, rb.keep(uids, ids, epoch=epoch))  # the choice did something


def test_bad_batches_are_refused_naming_the_row(derived):
    rb = gc.Rebalancer.open(derived)
    n = len(rb.p)
    with pytest.raises(gc.InputError, match=f"row 1 has entry id {n}, not one of"):
        rb.keep(["a", "b"], [[1], [2, n]])
    with pytest.raises(gc.InputError, match="row 0 has entry id -1"):
        rb.keep(["a"], (np.array([0, 1]), np.array([-1])))
    with pytest.raises(gc.InputError, match="3 rows, but 2 uids"):
        rb.keep(["a", "b"], [[1], [2], [3]])
    with pytest.raises(gc.InputError, match="row 1 is null"):
        rb.keep(["a", None], [[1], [2]])
    with pytest.raises(gc.InputError, match="row 0 is null"):  # nulls alone: Arrow type null
        rb.keep([None], [[1]])
    with pytest.raises(gc.InputError, match="CSR offsets"):
        rb.keep(["a"], (np.array([0, 5]), np.array([1])))
    with pytest.raises(gc.InputError, match="not lists of integer"):
        rb.keep(["a"], [["dog"]])
    with pytest.raises(gc.InputError, match="epoch must be"):
        rb.keep(["a"], [[1]], epoch=-1)
    with pytest.raises(gc.InputError, match="no finished pass 1"):
        gc.Rebalancer.open(derived / "nothing")


# -- the hashes, as documented -------------------------------------------------------------
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def documented_string_key(uid: str) -> int:
    """README: mix64(FNV1a64(utf8 bytes) ^ length)."""
    data = uid.encode("utf-8")
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & M64
    return mix64(h ^ len(data))


@given(st.lists(st.text(max_size=70), max_size=23))
def test_string_uid_keys_are_the_documented_hash(uids):
    """Batches of any size and mixed lengths (hash_slices hashes four at a time)."""
    assert uid_keys(pa.array(uids, pa.string())).tolist() == [documented_string_key(u) for u in uids]


# -- epochs ---------------------------------------------------------------------------
def test_epoch_seed_is_the_documented_mix():
    for seed, epoch in ((0, 0), (7, 1), (2**63 + 5, 12345), (M64, 2**40)):
        assert _core.epoch_seed(seed, epoch) == mix64(mix64(seed ^ 0xD1B54A32D192ED03) ^ epoch)


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """Rows matching one to three of four entries of very different counts."""
    base = tmp_path_factory.mktemp("epochs")
    rng = np.random.default_rng(1)
    words = np.array(["apple", "pie", "cake", "tea"])
    weights = np.array([0.6, 0.3, 0.08, 0.02])
    texts = [" ".join(rng.choice(words, rng.integers(1, 4), replace=False, p=weights)) for _ in range(20_000)]
    pool = base / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "uid": [f"r{i}" for i in range(len(texts))]}), pool)
    md = base / "md.txt"
    md.write_text("\n".join(words) + "\n")
    cfg = CurateConfig(inputs=(str(pool),), metadata=str(md), out=str(base / "out"), t=1500, seed=9)
    curate(cfg, progress=False)
    return base / "out"


def test_epochs_keep_at_one_minus_prod_rates_independently(overlapping):
    """Per epoch: kept rows ~ sum of q = 1 - prod(1 - p) (z-test, |z| < 4.5:
    false-failure chance under 7e-6 per test, 2e-4 for all 20 here by the
    union bound; the seed is fixed, so the test is deterministic). Across
    epochs: rows kept in both of two epochs ~ sum of q^2, as independent
    draws give."""
    rb = gc.Rebalancer.open(overlapping)
    (index,) = shards(overlapping)
    uids, ids = index.column(matchindex.UID), index.column(matchindex.IDS)
    q = np.array([1 - np.prod(1 - rb.p[row]) for row in ids.to_pylist()])
    assert 0.2 < q.mean() < 0.8
    mean, var = q.sum(), (q * (1 - q)).sum()
    both_mean, both_var = (q * q).sum(), (q * q * (1 - q * q)).sum()
    masks = {e: rb.keep(uids, ids, epoch=e) for e in range(10)}
    for e, keep in masks.items():
        assert abs(keep.sum() - mean) / math.sqrt(var) < 4.5, e
        nxt = masks[(e + 1) % 10]
        assert abs((keep & nxt).sum() - both_mean) / math.sqrt(both_var) < 4.5, e
        assert not np.array_equal(keep, nxt)
    epoch_free = rb.keep(uids, ids)
    assert not any(np.array_equal(epoch_free, m) for m in masks.values())
    assert np.array_equal(epoch_free, rb.keep(uids, ids, epoch=None))


# -- README's data-loader examples, on plain iterators (no torch, no webdataset) ---------
class Balanced:
    """README's IterableDataset, minus the torch base class."""

    def __init__(self, rb, shards):
        self.rb, self.shards, self.epoch = rb, shards, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        for shard in self.shards:
            for batch in pq.ParquetFile(shard).iter_batches(700):
                keep = self.rb.keep(batch["uid"], batch["matched_entry_ids"], epoch=self.epoch)
                yield from batch.filter(keep).to_pylist()


def test_readme_loader_examples(tmp_path):
    """Curate with a t that keeps every matched row, then let the loader
    balance: epoch None gives `balance --t T`'s rows, epochs differ."""
    pool = make_pool(tmp_path / "pool", n_files=2)
    run(pool, tmp_path / "out", t=10**9, partition_rows=1000, keep_matched_ids=True)
    shards = sorted((tmp_path / "out" / "kept").glob("part-*.parquet"))
    loader = Balanced(gc.Rebalancer.open(tmp_path / "out").with_params(t=4, seed=3), shards)
    loader.set_epoch(None)
    epoch_free = sorted(row["uid"] for row in loader)
    loader.set_epoch(1)
    epoch_one = sorted(row["uid"] for row in loader)
    assert epoch_one != epoch_free and set(epoch_one) < set(pq.read_table(shards).column("uid").to_pylist())

    rb, epoch = gc.Rebalancer.open(tmp_path / "out").with_params(t=4, seed=3), None

    def kept_this_epoch(sample):  # README's WebDataset select stage
        meta = sample["json"]
        return bool(rb.keep([meta["uid"]], [meta["matched_entry_ids"]], epoch=epoch)[0])

    samples = ({"json": row} for row in pq.read_table(shards).to_pylist())
    selected = sorted(sample["json"]["uid"] for sample in filter(kept_this_epoch, samples))
    balance(tmp_path / "out", t=4, seed=3, progress=False)
    assert selected == epoch_free == kept_uids_on_disk(tmp_path / "out")
