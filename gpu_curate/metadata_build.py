"""Building metadata entry lists the MetaCLIP way, and inspecting them (issue 5).

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

import contextlib
import functools
import glob
import importlib
import json
import os
import re
import shutil
import string
import tempfile
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import CurateError, MetadataError
from .storage import write_atomic
from .metadata import CJK_LIKE_CHARS, CJK_LIKE_RANGES, Metadata

WRAPPED_MARKS = ",.;:?!`"  # the marks the spacing rule (docs/semantics.md section 2) surrounds with spaces
# Wikipedia language codes of scripts written without spaces between words
# (MetaCLIP 2's list): their bigram entries are written without a space.
NO_SPACE_LANGUAGES = frozenset({"bo", "dz", "ja", "km", "lo", "my", "ryu", "th", "zh", "zh_classical", "zh_yue"})

# A wrapped mark next to anything but a space (or the entry's end), or a
# TAB/LF/CR anywhere: the spaced text never contains that, under either padding rule.
NEVER_MATCH_PATTERN = r"[^ ][,.;:?!`]|[,.;:?!`][^ ]|[\t\n\r]"
_NEVER_MATCH = re.compile(NEVER_MATCH_PATTERN)

Segmenter = Callable[[str], Iterable[str]]


# -- cleaning -------------------------------------------------------------------
def clean_entry(entry: str) -> str:
    """Collapse whitespace runs to one space and strip the ends."""
    return " ".join(entry.split())


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def is_pure_punctuation(token: str) -> bool:
    return bool(token) and all(_is_punctuation(c) for c in token)


def can_never_match(entry: str) -> bool:
    """True when no spaced text can contain this entry (e.g. "St. Louis", "a.m.")."""
    return _NEVER_MATCH.search(entry) is not None


# -- segmenters ---------------------------------------------------------------------
_SPACE_MARKS = str.maketrans({c: f" {c} " for c in WRAPPED_MARKS})
_CJK_CLASS = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in CJK_LIKE_RANGES) + re.escape(
    CJK_LIKE_CHARS
)
_CHAR_TOKENS = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")


def words(text: str) -> list[str]:
    """Tokens as the matcher sees them, so every counted word can match."""
    return text.translate(_SPACE_MARKS).split()


def chars(text: str) -> list[str]:
    """Each CJK-like character alone; other runs split on whitespace."""
    return _CHAR_TOKENS.findall(text)


BUILTIN_SEGMENTERS: dict[str, Segmenter] = {"words": words, "chars": chars}


def default_segmenter(lang: str | None) -> str:
    return "chars" if lang in NO_SPACE_LANGUAGES else "words"


def parse_segmenters(specs: Iterable[str]) -> dict[str | None, str]:
    """["jieba:lcut"] applies to every language; ["zh=jieba:lcut", "th=mymod:cut"] per language."""
    out: dict[str | None, str] = {}
    for spec in specs:
        lang, sep, name = spec.partition("=")
        out[lang if sep else None] = name if sep else spec
    return out


@functools.cache
def resolve_segmenter(spec: str) -> Segmenter:
    """A built-in name or an importable "module:function"."""
    if spec in BUILTIN_SEGMENTERS:
        return BUILTIN_SEGMENTERS[spec]
    module, _, attr = spec.partition(":")
    if not attr:
        raise CurateError(f"segmenter {spec!r}: use words, chars or module:function (e.g. jieba:lcut)")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise CurateError(f"segmenter {spec!r} cannot be loaded ({e})") from None
    if not callable(fn):
        raise CurateError(f"segmenter {spec!r} is not callable")
    return fn


# -- WordNet --------------------------------------------------------------------------
WORDNET_REQUIRED = tuple(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")) + (
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
)
WORDNET_OPTIONAL = ("lexnames", "cntlist.rev", "index.sense")
# lexnames(5WN): the lexicographer file names, numbered in this order. nltk
# needs this file; Debian's wordnet-base does not ship it, so it is written
# next to a copy of the data when missing.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
WORDNET_HOWTO = (
    "get it with `python -m nltk.downloader wordnet` or `apt-get install wordnet-base`, "
    "or pass --wordnet-dir DIR (or leave WordNet out with --no-wordnet)"
)


def _import_nltk():
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader  # noqa: F401
    except ImportError:
        raise CurateError("WordNet needs nltk: pip install 'gpu_curate[metadata]'") from None
    return nltk


def _has_wordnet(d: Path) -> bool:
    return all((d / name).is_file() for name in WORDNET_REQUIRED)


def locate_wordnet(wordnet_dir: str | Path | None = None):
    """Where WordNet is read from: `wordnet_dir`, nltk's data path (NLTK_DATA,
    ~/nltk_data, ... also wordnet.zip), $WNSEARCHDIR, or Debian's /usr/share/wordnet.
    Returns a Path or an nltk path pointer; never downloads."""
    nltk = _import_nltk()
    if wordnet_dir is not None:
        d = Path(wordnet_dir)
        if not _has_wordnet(d):
            raise CurateError(f"{d}: no WordNet database there (needs {', '.join(WORDNET_REQUIRED[:4])}, ...)")
        return d
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):  # as nltk's own loader tries
        try:
            found = nltk.data.find(resource)
        except LookupError:
            continue
        return Path(found.path) if isinstance(found, nltk.data.FileSystemPathPointer) else found
    for d in (os.environ.get("WNSEARCHDIR"), "/usr/share/wordnet"):
        if d and _has_wordnet(Path(d)):
            return Path(d)
    raise CurateError(
        "WordNet data not found (looked in nltk's data path, $NLTK_DATA, $WNSEARCHDIR, /usr/share/wordnet); "
        + WORDNET_HOWTO
    )


@contextlib.contextmanager
def _nltk_may_read(root: Path) -> Iterator[None]:
    # nltk >= 3.9 refuses to open files outside its data path; allow `root` while reading.
    import nltk

    if str(root) in nltk.data.path:
        yield
        return
    nltk.data.path.append(str(root))
    try:
        yield
    finally:
        nltk.data.path.remove(str(root))


def _english_reader(root):
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            # Only the multilingual (OMW) functions use this map, and building it
            # reads nltk's own "wordnet" corpus, which may not be installed.
            return None

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")  # no OMW reader: English only
        return EnglishWordNet(root, None)


@contextlib.contextmanager
def open_wordnet(wordnet_dir: str | Path | None = None):
    """An nltk WordNet reader over the located data (see `locate_wordnet`)."""
    root = locate_wordnet(wordnet_dir)
    if not isinstance(root, Path):  # inside nltk's data path (a zip): readable as is
        yield _english_reader(root)
    elif (root / "lexnames").is_file():
        with _nltk_may_read(root):
            yield _english_reader(str(root))
    else:
        with tempfile.TemporaryDirectory(prefix="gpu_curate-wordnet-") as tmp:
            # A copy, not links: nltk resolves links and refuses targets outside its data path.
            for name in WORDNET_REQUIRED + WORDNET_OPTIONAL:
                if (root / name).is_file():
                    shutil.copyfile(root / name, Path(tmp) / name)
            lines = (f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
            (Path(tmp) / "lexnames").write_text("".join(lines), encoding="ascii")
            with _nltk_may_read(Path(tmp)):
                yield _english_reader(tmp)


def wordnet_entries(wordnet_dir: str | Path | None = None, lemmas: bool = False) -> list[str]:
    """Synset-name heads, sorted; then (if `lemmas`) the other lemma names, sorted.

    A head is the part of `synset.name()` before the first dot, "_" read as a
    space; it is empty for names such as ".22.a.01" (".22-caliber"), dropped."""
    with open_wordnet(wordnet_dir) as wn:
        heads = {s.name().split(".")[0].replace("_", " ") for s in wn.all_synsets()} - {""}
        extra = {name.replace("_", " ") for name in wn.all_lemma_names()} - heads if lemmas else set()
    return sorted(heads) + sorted(extra)


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
    _write_atomic(Path(path), lines)


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
                or (len(entry) == 1 and _is_punctuation(entry))
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
def _write_atomic(path: Path, chunks: Iterable[str]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(chunks)

    write_atomic(path, write)


def write_entries(entries: Sequence[str], path: str | Path) -> None:
    """A JSON list, or one entry per line for a .txt path; written to a temp name, then renamed."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        _write_atomic(path, (f"{e}\n" for e in entries))
    else:
        _write_atomic(path, [json.dumps(list(entries), ensure_ascii=False)])


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
