"""`gpu-curate metadata build|stats`: a thin shell over gpu_curate.metadata_build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .errors import CurateError

app = typer.Typer(
    help="Build and inspect metadata entry lists (the substrings curation matches).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, as the main app's
)

PATHS_HELP = " Repeatable; globs and {lang} allowed; repeated keys are summed."


@app.command("build")
def build_command(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output: .json list, or .txt with one entry per line. With --lang: a directory receiving <lang>.json.",
    ),
    lang: List[str] = typer.Option(
        [],
        "--lang",
        help="Build one list per language code (repeatable); '{lang}' in input paths becomes the code. "
        "WordNet feeds 'en' only; no-space languages (zh, ja, th, ...) segment by --segmenter chars "
        "and write bigrams without a space.",
    ),
    numbers: bool = typer.Option(True, "--numbers/--no-numbers", help="Add the numbers 0..99, as MetaCLIP does."),
    wordnet: bool = typer.Option(True, "--wordnet/--no-wordnet", help="Add WordNet synset-name heads (English)."),
    wordnet_lemmas: bool = typer.Option(False, "--wordnet-lemmas", help="Also add every WordNet lemma name."),
    wordnet_dir: Optional[Path] = typer.Option(
        None,
        "--wordnet-dir",
        help="WordNet database directory (e.g. /usr/share/wordnet from Debian's wordnet-base). "
        "Default: nltk's data path ($NLTK_DATA, ~/nltk_data, ...), then $WNSEARCHDIR, then /usr/share/wordnet.",
    ),
    unigrams: List[str] = typer.Option([], "--unigrams", help="Word counts, TSV 'word<TAB>count'." + PATHS_HELP),
    bigrams: List[str] = typer.Option(
        [], "--bigrams", help="Word-pair counts, TSV 'w1 w2<TAB>count' (PMI needs --unigrams too)." + PATHS_HELP
    ),
    titles: List[str] = typer.Option(
        [], "--titles", help="Page-title view counts, TSV 'title<TAB>views'; '_' reads as a space." + PATHS_HELP
    ),
    corpus: List[str] = typer.Option(
        [],
        "--corpus",
        help="Raw text files (UTF-8, one text per line) counted with Dask into unigrams and bigrams, "
        "added to --unigrams/--bigrams." + " Repeatable; globs and {lang} allowed.",
    ),
    min_count: int = typer.Option(100, "--min-count", help="Keep words counted at least this often."),
    min_pmi: float = typer.Option(
        30.0,
        "--min-pmi",
        help="Keep bigrams with PMI = log2(c(ab)*N/(c(a)*c(b))) at least this (N: total word count). "
        "30 suits Wikipedia-sized N; lower it for small corpora.",
    ),
    min_views: int = typer.Option(70, "--min-views", help="Keep titles viewed at least this often."),
    max_wordnet: Optional[int] = typer.Option(None, "--max-wordnet", help="Cap on new entries from WordNet."),
    max_unigrams: Optional[int] = typer.Option(
        None, "--max-unigrams", help="Cap on new entries from unigrams (most frequent first)."
    ),
    max_bigrams: Optional[int] = typer.Option(
        None, "--max-bigrams", help="Cap on new entries from bigrams (highest PMI first)."
    ),
    max_titles: Optional[int] = typer.Option(
        None, "--max-titles", help="Cap on new entries from titles (most viewed first)."
    ),
    drop_unmatchable: bool = typer.Option(
        False,
        "--drop-unmatchable",
        help="Leave out entries no text can match (a mark , . ; : ? ! ` touching a non-space, e.g. 'St. Louis').",
    ),
    segmenter: List[str] = typer.Option(
        [],
        "--segmenter",
        help="How --corpus text splits into words: 'words' (like the matcher; default), 'chars' (each CJK-like "
        "character alone; default for no-space languages) or module:function, e.g. jieba:lcut. "
        "Prefix LANG= for one language (--segmenter zh=jieba:lcut); repeatable.",
    ),
    scheduler: Optional[str] = typer.Option(
        None,
        "--scheduler",
        help="Dask scheduler for --corpus: processes (default), threads, synchronous, or an address tcp://host:port.",
    ),
    blocksize: str = typer.Option(
        "64MiB", "--blocksize", help="Bytes of corpus per Dask partition (bounds memory per task)."
    ),
    counts_out: Optional[Path] = typer.Option(
        None,
        "--counts-out",
        help="Also write the --corpus counts here as [<lang>.]unigrams.tsv / bigrams.tsv for reuse.",
    ),
) -> None:
    """Build an entry list from WordNet, counts, corpora and titles; print what each source gave."""
    from rich.console import Console

    from .metadata_build import BuildOptions, build_entries, write_entries
    from .metadata_text import parse_segmenters

    for name, value in (("--min-count", min_count), ("--min-views", min_views)):
        if value < 1:
            raise CurateError(f"{name} must be at least 1")
    caps = {"wordnet": max_wordnet, "unigrams": max_unigrams, "bigrams": max_bigrams, "titles": max_titles}
    if any(c is not None and c < 0 for c in caps.values()):
        raise CurateError("--max-* caps must not be negative")
    if len(lang) > 1:
        untemplated = [p for p in (*unigrams, *bigrams, *titles, *corpus) if "{lang}" not in p]
        if untemplated:
            raise CurateError(f"{untemplated[0]}: with several --lang, input paths need {{lang}}")
    opts = BuildOptions(
        numbers=numbers,
        wordnet=wordnet,
        wordnet_lemmas=wordnet_lemmas,
        wordnet_dir=wordnet_dir,
        unigram_files=unigrams,
        bigram_files=bigrams,
        title_files=titles,
        corpus_files=corpus,
        min_count=min_count,
        min_pmi=min_pmi,
        min_views=min_views,
        caps=caps,
        drop_unmatchable=drop_unmatchable,
        segmenters=parse_segmenters(segmenter),
        scheduler=scheduler,
        blocksize=blocksize,
        counts_out=counts_out,
    )
    console = Console(highlight=False)
    for code in lang or [None]:
        target = out / f"{code}.json" if code else out

        def log(msg: str, code: Optional[str] = code) -> None:
            console.print(f"[dim]{code or 'metadata'}: {msg}[/dim]")

        entries, reports = build_entries(opts, code, log=log)
        if not entries:
            raise CurateError(f"{code or 'metadata'}: no entry passed the thresholds; nothing written")
        write_entries(entries, target)
        console.print(_report_table(reports))
        for r in reports:
            if r.note:
                console.print(f"{r.source}: {r.note}", soft_wrap=True)
        console.print(f"{len(entries):,} entries -> {target}", soft_wrap=True)


def _report_table(reports):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    numbers = ("candidates", "added", "duplicates", "rejected", "capped")
    table.add_column("source")
    for col in numbers:
        table.add_column(col, justify="right")
    for r in reports:
        table.add_row(r.source, *(f"{getattr(r, c):,}" for c in numbers))
    return table


@app.command("stats")
def stats_command(
    path: Path = typer.Argument(..., help="Entry list (.json, .txt, .parquet) or a directory of per-language lists."),
    examples: int = typer.Option(5, "--examples", help="How many examples to show per finding."),
    column: str = typer.Option("entry", "--column", help="Parquet column holding the entries."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per list instead of tables."),
    pool: Optional[list[str]] = typer.Option(
        None, "--pool", help="Also match these pool files (repeatable) and report what the entries hit."
    ),
    text_column: str = typer.Option("text", "--text-column", help="The pool's text column (with --pool)."),
    padding: str = typer.Option(
        "metaclip1", "--padding", help="Padding rule for --pool matching: metaclip1 or worldwide."
    ),
) -> None:
    """Entries, lengths, multi-word share, duplicates, and entries that can never match."""
    from rich.console import Console

    from .metadata_build import metadata_stats

    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".txt", ".parquet")) if path.is_dir() else [path]
    if not files:
        raise CurateError(f"{path}: no .json, .txt or .parquet entry lists there")
    console = Console(highlight=False, soft_wrap=True)  # report lines: never wrap paths or examples
    for f in files:
        stats = metadata_stats(f, examples=examples, column=column)
        if as_json:
            typer.echo(json.dumps(stats.to_dict(), ensure_ascii=False))
        else:
            _print_stats(console, stats)
        if pool:
            hits = pool_hits(f, pool, text_column, padding, column, examples)
            typer.echo(json.dumps(hits, ensure_ascii=False) if as_json else _format_hits(hits))


def pool_hits(metadata: Path, pool: list[str], text_column: str, padding: str, column: str, top: int) -> dict:
    """How a pool meets the list: rows matched, entries hit, the most matched entries."""
    import numpy as np

    from .pool import find_pool, plan_partitions
    from .readers import read_partition
    from .match import match
    from .metadata import Metadata

    md = Metadata.load(metadata, padding=padding, column=column)
    counts, rows, matched = np.zeros(len(md), np.uint64), 0, 0
    for part in plan_partitions(find_pool(pool).files, 100_000, text_column):  # one partition in memory at a time
        res = match(read_partition(part, None, text_column).column(text_column), md)
        counts += res.counts(len(md)).astype(np.uint64)
        rows += len(res)
        matched += int((np.diff(res.offsets) > 0).sum())
    order = np.argsort(-counts.astype(np.int64), kind="stable")[:top]
    return {
        "pool_rows": rows,
        "rows_matched": matched,
        "entries_hit": int((counts > 0).sum()),
        "entries": len(md),
        "top": [[md[int(i)], int(counts[i])] for i in order if counts[i]],
    }


def _format_hits(h: dict) -> str:
    from .summary import percent

    rows = percent(h["rows_matched"], h["pool_rows"]) if h["pool_rows"] else "-"
    entries = percent(h["entries_hit"], h["entries"]) if h["entries"] else "-"
    return (
        f"  pool: {h['rows_matched']:,} of {h['pool_rows']:,} rows matched ({rows}); "
        f"{h['entries_hit']:,} of {h['entries']:,} entries hit ({entries})\n"
        "  most matched: " + ", ".join(f"{e!r} {n:,}" for e, n in h["top"])
    )


def _print_stats(console, s) -> None:
    from rich.markup import escape

    console.print(f"[bold]{escape(s.path)}[/bold]: {s.entries:,} entries, {s.distinct:,} distinct")
    c = s.chars
    console.print(
        f"  length (chars): min {c['min']}, median {c['median']:g}, p90 {c['p90']:g}, p99 {c['p99']:g}, max {c['max']}"
    )
    console.print("  words per entry: " + ", ".join(f"{k}: {v:,}" for k, v in s.words.items()))
    console.print(f"  multi-word share: {s.multi_word_share:.1%}")
    if s.duplicate_copies:
        shown = ", ".join(f"{e!r} x{n}" for e, n in s.duplicate_examples)
        console.print(f"  duplicates: {s.duplicate_copies:,} extra copies (every copy matches), e.g. {escape(shown)}")
    else:
        console.print("  duplicates: none")
    if s.never_match:
        shown = ", ".join(repr(e) for e in s.never_match_examples)
        console.print(
            f"  [yellow]warning:[/yellow] {s.never_match:,} entries can never match, under either padding rule "
            f"(a , . ; : ? ! ` touching a non-space, or a tab/newline), e.g. {escape(shown)}"
        )
