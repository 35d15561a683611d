"""Shared pieces of the benchmarks: the data they run on and the machine they ran on.

Everything here is deterministic given its seed, so two runs of a benchmark
on the same machine see the very same texts and entries.
"""

from __future__ import annotations

import collections
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GPU_CURATE_SHARED_DATA", REPO.parent / "shared" / "data"))

# English pools of ../shared/data (see its README): file, tab-separated column or None.
ENGLISH_POOLS = (
    ("captions/coco_val2017_en.txt", None),
    ("alt_text/laion_style_10k.txt", None),
    ("alt_text/cc3m_validation.tsv", 0),
)


def read_texts(relpath: str, column: int | None = None) -> list[str]:
    """One text per line (or the given tab-separated column), as str."""
    lines = (DATA / relpath).read_text(encoding="utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if column is None:
        return lines
    return [line.split("\t")[column] for line in lines]


def english_texts(n: int, seed: int) -> list[str]:
    """n texts drawn with replacement, uniformly, from the union of ENGLISH_POOLS."""
    pool = [t for path, col in ENGLISH_POOLS for t in read_texts(path, col)]
    picks = np.random.default_rng(seed).integers(0, len(pool), size=n)
    return [pool[i] for i in picks]


def english_pool() -> list[str]:
    """The distinct source texts behind english_texts: the union of ENGLISH_POOLS."""
    return [t for path, col in ENGLISH_POOLS for t in read_texts(path, col)]


def long_texts(texts: list[str], join: int) -> list[str]:
    """len(texts) // join documents, each `join` consecutive texts joined by one space
    (the same bytes as `texts`, give or take the spaces and the leftover texts)."""
    return [" ".join(texts[i : i + join]) for i in range(0, len(texts) - join + 1, join)]


# Pools per language for the worldwide benchmarks (see ../shared/data/README.md).
LANGUAGE_POOLS = {
    "en": ENGLISH_POOLS,
    "zh": (("captions/coco_cn_zh.tsv", 1),),
    "nl": (("captions/dutch_descriptions_nl.txt", None),),
}
# Worldwide metadata: one list per language, matched with the worldwide padding rule.
LANGUAGE_METADATA = {
    "en": "metadata/en_500k.json",
    "zh": "metadata/zh_wordfreq_100k.txt",
    "nl": "metadata/nl_wordfreq_100k.txt",
}


def parse_mix(spec: str) -> dict[str, float]:
    """The --mix syntax, e.g. zh=0.8,en=0.15,nl=0.05, as {lang: share}, shares summing to 1."""
    mix = {}
    for part in spec.split(","):
        lang, _, share = part.partition("=")
        if lang.strip() not in LANGUAGE_POOLS or not share:
            raise ValueError(f"{part!r}: want LANG=SHARE with LANG in {', '.join(LANGUAGE_POOLS)}")
        mix[lang.strip()] = float(share)
    total = sum(mix.values())
    if total <= 0 or min(mix.values()) < 0:
        raise ValueError(f"{spec!r}: shares must be >= 0 and not all 0")
    return {lang: share / total for lang, share in mix.items()}


def worldwide_texts(n: int, mix: dict[str, float], seed: int) -> tuple[list[str], list[str]]:
    """n (text, language) rows: each row's language drawn with the `mix` shares,
    then its text drawn uniformly, with replacement, from that language's pool."""
    rng = np.random.default_rng(seed)
    langs = list(mix)
    row_lang = rng.choice(len(langs), size=n, p=[mix[lang] for lang in langs])
    texts: list[str] = [""] * n
    for k, lang in enumerate(langs):
        pool = [t for path, col in LANGUAGE_POOLS[lang] for t in read_texts(path, col)]
        rows = np.flatnonzero(row_lang == k)
        for row, pick in zip(rows.tolist(), rng.integers(0, len(pool), size=len(rows)).tolist()):
            texts[row] = pool[pick]
    return texts, [langs[k] for k in row_lang.tolist()]


def pool_ngrams(texts: list[str], sizes: tuple[int, ...] = (2, 3)) -> list[str]:
    """The word n-grams of `texts`, most frequent first (ties in string order).

    Words are the texts' tokens as matching sees them (the MetaCLIP spacing:
    ,.;:?!` wrapped in spaces, TAB/LF/CR as spaces, then single spaces), less
    empty tokens and the wrapped marks themselves, so every n-gram is an entry
    that matches where its words stand side by side. Nested entries like "a
    man", "man in", "man in a" are what Wikipedia bigrams and titles add to
    real metadata."""
    marks = ",.;:?!`"
    table = str.maketrans({**{m: f" {m} " for m in marks}, "\t": " ", "\n": " ", "\r": " "})
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        words = text.translate(table).split(" ")
        for n in sizes:
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if all(w and w not in marks for w in gram):
                    counts[" ".join(gram)] += 1
    return [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def words_of(path: Path, limit: int | None = None) -> pa.Array:
    """The distinct single-word entries of a metadata file (JSON list or one per line)."""
    if path.suffix == ".json":
        entries = json.loads(path.read_text(encoding="utf-8"))
    else:
        entries = path.read_text(encoding="utf-8").split("\n")
    words = [e for e in entries if e and " " not in e and "\t" not in e]
    return pa.array(list(dict.fromkeys(words))[:limit], pa.large_string())


def combine_words(words: pa.Array, n: int, lengths: list[int], weights: list[float], sep: str, seed: int) -> pa.Array:
    """n strings, each a run of `lengths` words (drawn with `weights`) from
    `words` joined by `sep`. Words are drawn with a Zipf-like bias toward the
    front of the list (the metadata files are in frequency order). Built with
    NumPy over byte buffers, a million strings at a time."""
    rng = np.random.default_rng(seed)
    data = np.frombuffer(words.buffers()[2], np.uint8)
    off = np.frombuffer(words.buffers()[1], np.int64)[words.offset : words.offset + len(words) + 1]
    sep_bytes = np.frombuffer(sep.encode(), np.uint8)
    chunks = []
    for start in range(0, n, 1_000_000):
        m = min(n, start + 1_000_000) - start
        k = rng.choice(lengths, size=m, p=np.asarray(weights) / sum(weights))
        # u**3 piles the draws onto the first (most frequent) words.
        w = np.minimum((rng.random(int(k.sum())) ** 3 * len(words)).astype(np.int64), len(words) - 1)
        first = np.zeros(len(w), bool)
        first[np.cumsum(k) - k] = True
        lead = np.where(first, 0, len(sep_bytes))  # separator bytes before each word
        piece = lead + off[w + 1] - off[w]
        piece_start = np.cumsum(piece) - piece
        owner = np.repeat(np.arange(len(w)), piece)
        within = np.arange(int(piece.sum())) - piece_start[owner]
        is_sep = within < lead[owner]
        src = off[w][owner] + within - lead[owner]
        out = np.where(
            is_sep,
            sep_bytes[np.minimum(within, max(len(sep_bytes) - 1, 0))] if len(sep_bytes) else 0,
            data[np.where(is_sep, 0, src)],
        ).astype(np.uint8)
        entry_len = np.add.reduceat(piece, np.flatnonzero(first))
        offsets = np.concatenate([[0], np.cumsum(entry_len)]).astype(np.int64)
        chunks.append(pa.LargeStringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(out)))
    return pa.concat_arrays(chunks)


def generated_entries(n: int, seed: int) -> pa.Array:
    """n distinct entries shaped like worldwide metadata: the real en_500k
    entries, then English and Dutch 1-4 word combinations and Chinese 2-3
    word compounds (no spaces, CJK-like ends: the worldwide rule leaves them
    unpadded) built from the real word lists, until n distinct ones exist."""
    meta = DATA / "metadata"
    real = pa.array(json.loads((meta / "en_500k.json").read_text(encoding="utf-8")), pa.large_string())
    latin = pa.concat_arrays([words_of(meta / "en_500k.json"), words_of(meta / "nl_wordfreq_100k.txt")])
    chinese = words_of(meta / "zh_wordfreq_100k.txt")
    parts, have, round_ = [real], len(real), 0
    while have < n:
        want = int((n - have) * 1.1) + 1000
        n_zh = want // 8  # one in eight, roughly MetaCLIP 2's share of CJK-script languages
        parts.append(combine_words(latin, want - n_zh, [1, 2, 3, 4], [0.05, 0.6, 0.3, 0.05], " ", seed + round_))
        parts.append(combine_words(chinese, n_zh, [2, 3], [0.7, 0.3], "", seed + 1000 + round_))
        merged = pc.unique(pa.concat_arrays(parts))
        parts, have, round_ = [merged], len(merged), round_ + 1
    return parts[0].slice(0, n)


def machine_info() -> dict:
    """What a reader needs to compare numbers: CPU, cores, memory, versions, commit, date."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem_gib = round(kb / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {d: version(d) for d in ("gpu_curate", "numpy", "pyarrow", "pyahocorasick", "pybind11")},
        "commit": git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain") else ""),
    }


def print_machine(info: dict) -> None:
    print(
        f"# {info['date_utc']} UTC | {info['cpu']} | {info['usable_cpus']}/{info['logical_cpus']} CPUs | "
        f"{info['memory_gib']} GiB | {info['os']}"
    )
    print(
        f"# Python {info['python']} | "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f" | commit {info['commit']}"
    )


def append_json(path: str | None, record: dict) -> None:
    """Append one JSON line to `path` (when given)."""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
