"""Per-language metadata (MetaCLIP 2, docs/semantics.md section 1).

A `MetadataSet` is one entry list (lang None: every row is matched against
it) or one list per language code. Per-language lists share one global id
space: language L's entry k has id base[L] + k, languages in sorted order, so
counts, probabilities and the match index stay single flat vectors.
Rows are grouped by language within a partition and each group is matched
by its own language's automaton: no per-row automaton switching, and every
automaton is the plain one of match.py.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .automaton import Automaton
from .errors import MetadataError
from .match import match
from .results import MatchResult
from .metadata import Metadata

OTHER = "other"  # the fallback list for rows whose language has none


@dataclass(frozen=True)
class MetadataRef:
    """What a worker needs to load the same metadata (small, picklable)."""

    path: str
    padding: str | None
    column: str = "entry"


class MetadataSet:
    def __init__(self, lists: dict[str | None, Metadata]):
        self.lists = dict(sorted(lists.items(), key=lambda kv: kv[0] or ""))
        sizes = [len(md) for md in self.lists.values()]
        self.bases = dict(zip(self.lists, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()))
        self.n_entries = int(sum(sizes))
        self._automata: dict[str | None, Automaton] = {}
        self._lock = threading.Lock()

    @property
    def worldwide(self) -> bool:
        return None not in self.lists

    @property
    def padding(self) -> str:
        return next(iter(self.lists.values())).padding

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for lang, md in self.lists.items():
            h.update(f"{lang}\0{md.fingerprint}\0".encode())
        return h.hexdigest()[:32]

    @classmethod
    def load(cls, ref: MetadataRef) -> "MetadataSet":
        """A file is one list, unless it is a parquet with a `lang` column; a
        directory holds one `<lang>.json|.txt|.parquet` per language.
        Per-language metadata defaults to the worldwide padding rule."""
        path = Path(ref.path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".txt", ".parquet"))
            if not files:
                raise MetadataError(f"{path}: no <lang>.json/.txt/.parquet files in this directory")
            padding = ref.padding or "worldwide"
            return cls({f.stem: Metadata.load(f, padding, ref.column) for f in files})
        if path.suffix.lower() == ".parquet" and _has_lang_column(path):
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["lang", ref.column])
            padding = ref.padding or "worldwide"
            lists = {}
            for lang in pc.unique(table["lang"]).to_pylist():
                rows = table.filter(pc.equal(table["lang"], lang))
                lists[lang] = Metadata(rows[ref.column], padding, f"{path} (lang {lang})")
            if not lists:
                raise MetadataError(f"{path}: no entries")
            return cls(lists)
        return cls({None: Metadata.load(path, ref.padding or "metaclip1", ref.column)})

    def automaton(self, lang: str | None) -> Automaton:
        with self._lock:  # built (or loaded from the disk cache) once per process
            if lang not in self._automata:
                self._automata[lang] = Automaton.for_metadata(self.lists[lang])
            return self._automata[lang]

    def entry_table(self) -> pa.Table:
        """entry_id, entry (and lang) for every entry, in id order."""
        entries = pa.concat_arrays([md.entries for md in self.lists.values()])
        table = pa.table({"entry_id": pa.array(np.arange(self.n_entries, dtype=np.int64)), "entry": entries})
        if self.worldwide:
            langs = np.repeat(list(self.lists), [len(md) for md in self.lists.values()])
            table = table.append_column("lang", pa.array(langs, type=pa.string()))
        return table

    def lang_ranges(self) -> dict[str, tuple[int, int]]:
        return {lang: (self.bases[lang], self.bases[lang] + len(md)) for lang, md in self.lists.items()}

    def list_of_rows(self, langs: pa.Array | None) -> np.ndarray:
        """Per row, the position in `lists` of the list it is matched against:
        its language's, else `other`'s, else -1 (none). int32."""
        if langs is None:
            raise MetadataError("per-language metadata needs the pool's language column (--lang-column)")
        langs = langs.combine_chunks() if isinstance(langs, pa.ChunkedArray) else langs
        names = list(self.lists)
        found = pc.index_in(langs.cast(pa.string()), value_set=pa.array(names, pa.string()))
        fallback = names.index(OTHER) if OTHER in self.lists else -1
        return pc.fill_null(found, fallback).to_numpy(zero_copy_only=False).astype(np.int32)

    def match(self, texts: pa.Array, langs: pa.Array | None, device: str = "cpu", threads: int | None = None):
        """(MatchResult, rows whose language has no list) for one partition."""
        if not self.worldwide:
            return match(texts, self.automaton(None), device, threads), 0
        texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        n = len(texts)
        names = list(self.lists)
        list_of_row = self.list_of_rows(langs)
        no_list = int((list_of_row < 0).sum())
        counts = np.zeros(n, np.int64)
        pieces = []  # (row indices, result) per language
        for k, lang in enumerate(names):
            rows = np.flatnonzero(list_of_row == k)
            if len(rows):
                res = match(texts.take(pa.array(rows)), self.automaton(lang), device, threads)
                counts[rows] = np.diff(res.offsets)
                pieces.append((rows, res, self.bases[lang]))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        ids = np.empty(offsets[-1], np.int32)
        for rows, res, base in pieces:  # scatter each group's CSR back to its rows
            dst = np.repeat(offsets[rows], np.diff(res.offsets)) + _ranks(res.offsets)
            ids[dst] = res.entry_ids + base
        return MatchResult(offsets, ids), no_list


def _ranks(offsets: np.ndarray) -> np.ndarray:
    """0, 1, ... within each CSR row."""
    lengths = np.diff(offsets)
    return np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)


def _has_lang_column(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        return "lang" in pq.read_schema(path).names
    except Exception:
        return False


_LOAD_LOCK = threading.Lock()


def load_cached(ref: MetadataRef) -> MetadataSet:
    """One MetadataSet per worker process, reused across its partitions (the
    lock: a worker's threads start their first partitions together)."""
    with _LOAD_LOCK:
        return _load(ref)


@lru_cache(maxsize=4)
def _load(ref: MetadataRef) -> MetadataSet:
    return MetadataSet.load(ref)
