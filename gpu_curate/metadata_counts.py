"""Word counts for the metadata builder: `key<TAB>count` files, counting a
corpus with Dask (bounded memory), and the bigram PMI MetaCLIP used."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import MetadataError
from .metadata_text import is_pure_punctuation, resolve_segmenter, write_lines_atomic

# -- counts ---------------------------------------------------------------------------
COUNTS_SCHEMA = pa.schema([("key", pa.large_string()), ("count", pa.int64())])


def read_counts(path: str | Path) -> pa.Table:
    """A `key<TAB>count` file as a (key, count) table; no quoting, no header."""
    import pyarrow.csv as pacsv

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return COUNTS_SCHEMA.empty_table()  # e.g. a shard of a language with no data
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=COUNTS_SCHEMA.names),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=COUNTS_SCHEMA),
        )
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such file") from None
    except pa.ArrowInvalid as e:
        raise MetadataError(_first_bad_line(path) or f"{path}: {e}") from None
    if table.column("count").null_count:
        raise MetadataError(_first_bad_line(path) or f"{path}: missing counts")
    return table


def _first_bad_line(path) -> str | None:
    # pyarrow's parse errors name no line; find it (only on the error path).
    good = re.compile(rb"[^\t\n]*\t *\d+ *\r?\n?")
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip() and not good.fullmatch(line):
                return f"{path} line {n}: expected key<TAB>count, got {line[:80]!r}"
    return None


def sum_counts(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate and add up repeated keys (per-day or per-shard files may be passed together)."""
    if not tables:
        return COUNTS_SCHEMA.empty_table()
    summed = pa.concat_tables([t.select(COUNTS_SCHEMA.names).cast(COUNTS_SCHEMA) for t in tables])
    summed = summed.group_by("key").aggregate([("count", "sum")])
    return pa.table({"key": summed.column("key"), "count": summed.column("count_sum")}, schema=COUNTS_SCHEMA)


def _count_partition(lines: Iterable[str], segmenter: str) -> tuple[Counter, Counter]:
    segment = resolve_segmenter(segmenter)
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    for line in lines:
        previous = None
        for token in (t for piece in segment(line) for t in piece.split()):
            if is_pure_punctuation(token):
                previous = None  # a bigram never spans punctuation
                continue
            unigrams[token] += 1
            if previous is not None:
                bigrams[f"{previous} {token}"] += 1
            previous = token
    return unigrams, bigrams


def _merge_partitions(parts: Iterable[tuple[Counter, Counter]]) -> tuple[Counter, Counter]:
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    for u, b in parts:
        unigrams.update(u)
        bigrams.update(b)
    return unigrams, bigrams


def _counter_table(counter: Counter) -> pa.Table:
    return pa.table({"key": list(counter.keys()), "count": list(counter.values())}, schema=COUNTS_SCHEMA)


def count_corpus(
    paths: Sequence[str | Path], segmenter: str = "words", scheduler: str | None = None, blocksize: str = "64MiB"
) -> tuple[pa.Table, pa.Table]:
    """(unigram, bigram) count tables of raw text files, one text per line.

    Dask reads the files in `blocksize` pieces, counts each piece, and merges the
    counters in a tree; memory grows with the vocabulary, never with the corpus.
    `scheduler`: dask's "processes" (the bag default), "threads", "synchronous",
    or a distributed scheduler address ("tcp://host:8786").
    """
    import dask.bag as db

    resolve_segmenter(segmenter)  # fail here, not in a worker
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise MetadataError(f"{missing[0]}: no such corpus file")
    lines = db.read_text([str(p) for p in paths], blocksize=blocksize, encoding="utf-8")
    counted = lines.reduction(
        functools.partial(_count_partition, segmenter=segmenter), _merge_partitions, split_every=8
    )
    try:
        if scheduler and "://" in scheduler:
            from distributed import Client

            with Client(scheduler):
                unigrams, bigrams = counted.compute()
        else:
            unigrams, bigrams = counted.compute(scheduler=scheduler)
    except UnicodeDecodeError as e:
        raise MetadataError(f"corpus is not valid UTF-8 ({e})") from None
    return _counter_table(unigrams), _counter_table(bigrams)


def write_counts(table: pa.Table, path: str | Path) -> None:
    """Counts as `key<TAB>count` lines, most frequent first (readable by `read_counts`)."""
    table = table.sort_by([("count", "descending"), ("key", "ascending")])
    lines = (f"{k}\t{c}\n" for k, c in zip(table.column("key").to_pylist(), table.column("count").to_pylist()))
    write_lines_atomic(Path(path), lines)


# -- selection by score ---------------------------------------------------------------
def _ranked(keys: pa.Array, scores: np.ndarray, keep: np.ndarray) -> list[str]:
    table = pa.table({"key": pc.filter(keys, pa.array(keep)), "score": scores[keep]})
    order = pc.sort_indices(table, sort_keys=[("score", "descending"), ("key", "ascending")])
    return table.column("key").take(order).to_pylist()


def frequent_keys(counts: pa.Table, min_count: int) -> list[str]:
    """Keys counted at least `min_count` times, most frequent first."""
    c = counts.column("count").to_numpy()
    return _ranked(counts.column("key"), c, c >= min_count)


def bigram_pmi(bigrams: pa.Table, unigrams: pa.Table) -> pa.Table:
    """(key, pmi) for every bigram whose two words have unigram counts (formula: module doc)."""
    keys = bigrams.column("key").combine_chunks()
    parts = pc.split_pattern(keys, " ")
    bad = pc.or_(pc.not_equal(pc.list_value_length(parts), 2), pc.match_substring_regex(keys, "^ | $"))
    if pc.any(bad).as_py():
        key = keys[pc.index(bad, True).as_py()].as_py()
        raise MetadataError(f"bigram {key!r} is not two words separated by one space")
    first, second = pc.list_element(parts, 0), pc.list_element(parts, 1)
    vocab, counts = unigrams.column("key").combine_chunks(), unigrams.column("count").combine_chunks()
    c1 = counts.take(pc.index_in(first, value_set=vocab))
    c2 = counts.take(pc.index_in(second, value_set=vocab))
    known = pc.and_(pc.is_valid(c1), pc.is_valid(c2))
    total = float(pc.sum(counts).as_py() or 0)
    c12 = bigrams.column("count").combine_chunks().filter(known).to_numpy().astype(np.float64)
    c1 = c1.filter(known).to_numpy().astype(np.float64)
    c2 = c2.filter(known).to_numpy().astype(np.float64)
    # Floats, not int64: c(a b) * N overflows 64 bits at Wikipedia scale.
    pmi = np.log2(c12 * total) - np.log2(c1 * c2)
    return pa.table({"key": keys.filter(known), "pmi": pmi})


def high_pmi_bigrams(bigrams: pa.Table, unigrams: pa.Table, min_pmi: float, joiner: str = " ") -> list[str]:
    """Bigrams with PMI >= `min_pmi`, highest first, their words joined by `joiner`."""
    scored = bigram_pmi(bigrams, unigrams)
    pmi = scored.column("pmi").to_numpy()
    ranked = _ranked(scored.column("key"), pmi, pmi >= min_pmi)
    return ranked if joiner == " " else [joiner.join(k.split(" ")) for k in ranked]
