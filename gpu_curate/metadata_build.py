"""Building metadata entry lists the MetaCLIP way, and inspecting them.

Sources, taken in this order (MetaCLIP's), each best first:
  numbers   "0" .. "99"
  wordnet   WordNet synset-name heads ("hot_dog.n.01" -> "hot dog"); optionally
            every lemma name as well; English only
  unigrams  words counted at least `min_count` times (default 100)
  bigrams   word pairs whose PMI reaches `min_pmi` (default 30)
  titles    page titles viewed at least `min_views` times (default 70)

Bigram PMI is the one MetaCLIP used (nltk's BigramAssocMeasures.pmi):
    PMI(a b) = log2( c(a b) * N / (c(a) * c(b)) )
that is log base 2 of P(a b) / (P(a) P(b)), where every probability is a count
divided by the same N = the sum of all unigram counts (not the number of
bigrams). A pair with a word absent from the unigram counts gets no score.
PMI <= log2(N / c(a b)), so the threshold of 30 only makes sense for
Wikipedia-sized N (billions of words); lower it for small corpora.

Entries are cleaned (whitespace runs become one space, ends stripped), empty
ones and lone punctuation marks are dropped, and duplicates keep their first
occurrence. A per-source cap limits how many *new* entries a source adds.

Words are counted from raw text with a segmenter: a callable text -> tokens.
Built in: "words" (the matcher's own view of a text, docs/semantics.md section 2: the marks
, . ; : ? ! ` stand alone, whitespace splits) and "chars" (every CJK-like code
point, docs/semantics.md section 3, is a token of its own; for scripts written without
spaces). Any "module:function" works too, e.g. "jieba:lcut" after
`pip install jieba`; tokens are split again on whitespace, blanks dropped.
On the CLI, "--segmenter zh=jieba:lcut" picks one for a single language.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import CurateError, MetadataError
from .metadata import Metadata
from .metadata_counts import count_corpus, frequent_keys, high_pmi_bigrams, read_counts, sum_counts, write_counts
from .metadata_text import (
    NEVER_MATCH_PATTERN,
    NO_SPACE_LANGUAGES,
    is_punctuation,
    can_never_match,
    clean_entry,
    default_segmenter,
    write_lines_atomic,
)
from .metadata_wordnet import wordnet_entries


# -- assembling -------------------------------------------------------------------------
@dataclass
class SourceReport:
    """What one source proposed and what became of it."""

    source: str
    candidates: int = 0  # proposed (after the source's own threshold)
    added: int = 0  # new entries it contributed
    duplicates: int = 0  # already present
    rejected: int = 0  # empty, lone punctuation, or never-matching when dropped
    capped: int = 0  # new but beyond the source's cap
    note: str = ""


def assemble(
    sources: Sequence[tuple[str, Iterable[str]]],
    caps: Mapping[str, int | None] | None = None,
    drop_unmatchable: bool = False,
) -> tuple[list[str], list[SourceReport]]:
    """Merge sources in order: clean, drop junk, keep first occurrences, cap new entries per source."""
    caps = caps or {}
    kept: dict[str, None] = {}  # insertion-ordered set
    reports = []
    for name, candidates in sources:
        report, cap = SourceReport(name), caps.get(name)
        for raw in candidates:
            report.candidates += 1
            entry = clean_entry(raw)
            if (
                not entry
                or (len(entry) == 1 and is_punctuation(entry))
                or (drop_unmatchable and can_never_match(entry))
            ):
                report.rejected += 1
            elif entry in kept:
                report.duplicates += 1
            elif cap is not None and report.added >= cap:
                report.capped += 1
            else:
                kept[entry] = None
                report.added += 1
        reports.append(report)
    return list(kept), reports


@dataclass
class BuildOptions:
    """Every switch of `gpu-curate metadata build`; paths may contain "{lang}" and globs."""

    numbers: bool = True
    wordnet: bool = True
    wordnet_lemmas: bool = False
    wordnet_dir: Path | None = None
    unigram_files: Sequence[str | Path] = ()
    bigram_files: Sequence[str | Path] = ()
    title_files: Sequence[str | Path] = ()
    corpus_files: Sequence[str | Path] = ()
    min_count: int = 100
    min_pmi: float = 30.0
    min_views: int = 70
    caps: Mapping[str, int | None] = field(default_factory=dict)
    drop_unmatchable: bool = False
    # language code (None: every language) -> segmenter spec; unset: default_segmenter(lang)
    segmenters: Mapping[str | None, str] = field(default_factory=dict)
    scheduler: str | None = None
    blocksize: str = "64MiB"
    counts_out: Path | None = None  # write the corpus counts here for reuse


def expand_paths(patterns: Sequence[str | Path], lang: str | None) -> list[Path]:
    """Fill in "{lang}", expand globs (sorted); a glob that matches nothing is an error."""
    out: list[Path] = []
    for pattern in patterns:
        p = str(pattern) if lang is None else str(pattern).replace("{lang}", lang)
        if glob.has_magic(p):
            hits = sorted(glob.glob(p))
            if not hits:
                raise MetadataError(f"{p}: no file matches")
            out.extend(Path(h) for h in hits)
        else:
            out.append(Path(p))
    return out


def build_entries(
    opts: BuildOptions, lang: str | None = None, log: Callable[[str], None] = lambda msg: None
) -> tuple[list[str], list[SourceReport]]:
    """One entry list (for `lang`, or the single-language default) and its per-source report."""
    notes: dict[str, str] = {}
    sources: list[tuple[str, Iterable[str]]] = []
    if opts.numbers:
        sources.append(("numbers", [str(i) for i in range(100)]))
    if opts.wordnet and lang in (None, "en"):
        log("reading WordNet")
        sources.append(("wordnet", wordnet_entries(opts.wordnet_dir, opts.wordnet_lemmas)))
    elif opts.wordnet:
        sources.append(("wordnet", []))
        notes["wordnet"] = "English only"
    unigrams = sum_counts([read_counts(p) for p in expand_paths(opts.unigram_files, lang)])
    bigrams = sum_counts([read_counts(p) for p in expand_paths(opts.bigram_files, lang)])
    corpus = expand_paths(opts.corpus_files, lang)
    if corpus:
        segmenter = opts.segmenters.get(lang) or opts.segmenters.get(None) or default_segmenter(lang)
        log(f"counting {len(corpus)} corpus file(s) with dask (segmenter {segmenter})")
        u, b = count_corpus(corpus, segmenter, opts.scheduler, opts.blocksize)
        if opts.counts_out is not None:
            prefix = f"{lang}." if lang else ""
            write_counts(u, Path(opts.counts_out) / f"{prefix}unigrams.tsv")
            write_counts(b, Path(opts.counts_out) / f"{prefix}bigrams.tsv")
        unigrams, bigrams = sum_counts([unigrams, u]), sum_counts([bigrams, b])
    if len(bigrams) and not len(unigrams):
        raise MetadataError("bigram PMI needs unigram counts: pass --unigrams or --corpus")
    if opts.unigram_files or corpus:
        sources.append(("unigrams", frequent_keys(unigrams, opts.min_count)))
    if opts.bigram_files or corpus:
        joiner = "" if lang in NO_SPACE_LANGUAGES else " "
        sources.append(("bigrams", high_pmi_bigrams(bigrams, unigrams, opts.min_pmi, joiner)))
    titles = expand_paths(opts.title_files, lang)
    if titles:
        views = sum_counts([_underscores_to_spaces(read_counts(p)) for p in titles])
        sources.append(("titles", frequent_keys(views, opts.min_views)))
    if not sources:
        raise CurateError("no source selected: enable numbers/WordNet or pass count, corpus or title files")
    entries, reports = assemble(sources, opts.caps, opts.drop_unmatchable)
    for r in reports:
        r.note = notes.get(r.source, "")
    return entries, reports


def _underscores_to_spaces(table: pa.Table) -> pa.Table:
    # Wikipedia page titles spell spaces as underscores ("New_York").
    return table.set_column(0, "key", pc.replace_substring(table.column("key"), "_", " "))


# -- output -------------------------------------------------------------------------------
def write_entries(entries: Sequence[str], path: str | Path) -> None:
    """A JSON list, or one entry per line for a .txt path; written to a temp name, then renamed."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        write_lines_atomic(path, (f"{e}\n" for e in entries))
    else:
        write_lines_atomic(path, [json.dumps(list(entries), ensure_ascii=False)])


# -- stats --------------------------------------------------------------------------------------
@dataclass
class MetadataStats:
    path: str
    entries: int
    distinct: int
    duplicate_copies: int  # entries minus distinct
    duplicate_examples: list[tuple[str, int]]
    chars: dict[str, float]  # length in code points: min, median, p90, p99, max
    words: dict[str, int]  # entries by word count: "1" .. "4", "5+"
    multi_word_share: float
    never_match: int  # entries no text can match (see can_never_match)
    never_match_examples: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def metadata_stats(path: str | Path, examples: int = 5, column: str = "entry") -> MetadataStats:
    """Statistics of an entry list, vectorized (fine for 30M entries)."""
    entries = Metadata.load(path, column=column).entries
    n = len(entries)
    lengths = pc.utf8_length(entries).to_numpy(zero_copy_only=False)
    nwords = pc.list_value_length(pc.utf8_split_whitespace(entries)).to_numpy(zero_copy_only=False)
    q = np.percentile(lengths, [50, 90, 99]) if n else [0, 0, 0]
    counts = pc.value_counts(entries)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    dup = dup.take(pc.array_sort_indices(dup.field("counts"), order="descending"))[:examples]
    never = pc.match_substring_regex(entries, NEVER_MATCH_PATTERN)
    hist = {str(k): int((nwords == k).sum()) for k in range(1, 5)}
    hist["5+"] = int((nwords >= 5).sum())
    return MetadataStats(
        path=str(path),
        entries=n,
        distinct=len(counts),
        duplicate_copies=n - len(counts),
        duplicate_examples=[(d["values"], d["counts"]) for d in dup.to_pylist()],
        chars={
            "min": int(lengths.min()) if n else 0,
            "median": float(q[0]),
            "p90": float(q[1]),
            "p99": float(q[2]),
            "max": int(lengths.max()) if n else 0,
        },
        words=hist,
        multi_word_share=float((nwords > 1).mean()) if n else 0.0,
        never_match=int(pc.sum(never).as_py() or 0),
        never_match_examples=entries.filter(never)[:examples].to_pylist(),
    )
