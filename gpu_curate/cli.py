"""The `gpu-curate` command line. Each command is a thin shell over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .cluster import LocalOrRemoteClient
from .errors import CurateError

app = typer.Typer(
    name="gpu-curate",
    help="MetaCLIP-style curation of image-text pools, exact on CPU and GPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command("match")
def match_command(
    input: Path = typer.Option(
        ..., "--input", "-i", help="Pool file: parquet, jsonl, tsv/csv or txt (one text per line)."
    ),
    metadata: Path = typer.Option(
        ..., "--metadata", "-m", help="Entry list: .json list, .txt (one per line) or .parquet."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output parquet: one row per input row with matched_entry_ids."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the texts."),
    padding: str = typer.Option("metaclip1", "--padding", help="Entry padding rule: metaclip1 or worldwide."),
    device: str = typer.Option("cpu", "--device", help="cpu, gpu or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Match every text of one file against the metadata and write the match sets."""
    import pyarrow as pa

    from .pool import read_table
    from .storage import write_parquet_atomic
    from .match import match
    from .metadata import Metadata

    md = Metadata.load(metadata, padding=padding)
    table = read_table(input, columns=None)
    if text_column not in table.column_names:
        raise CurateError(f"{input}: no column {text_column!r} (columns: {', '.join(table.column_names)})")
    res = match(table.column(text_column), md, device=device, threads=threads)
    table = table.append_column("matched_entry_ids", res.to_arrow().cast(pa.list_(pa.int32())))
    write_parquet_atomic(table, out)
    typer.echo(f"{len(res)} rows, {int((res.offsets[1:] > res.offsets[:-1]).sum())} matched -> {out}")


def _partition_rows(size: str, inputs: list[str]) -> int:
    """--partition-size: a row count ("100000") or bytes of text ("256MB"),
    converted to rows from the first parquet file's average row size."""
    if size.strip().isdigit():
        rows = int(size)
    else:
        import dask.utils
        import pyarrow.parquet as pq

        from .pool import expand_inputs

        try:
            target = dask.utils.parse_bytes(size)
        except ValueError:
            raise CurateError(f"--partition-size: {size!r} is neither a row count nor a size like 256MB") from None
        parquet = [f for f in expand_inputs(inputs) if f.suffix.lower() == ".parquet"]
        row_bytes = 200  # no parquet to measure: a guess for alt-text lines
        if parquet:
            meta = pq.ParquetFile(parquet[0]).metadata
            row_bytes = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)) / max(
                meta.num_rows, 1
            )
        rows = int(target / max(row_bytes, 1))
    if rows < 1:
        raise CurateError(f"--partition-size must be at least one row, got {size!r}")
    return rows


def _split(columns: Optional[str]) -> Optional[tuple[str, ...]]:
    return tuple(c.strip() for c in columns.split(",") if c.strip()) if columns else None


@app.command("curate")
def curate_command(
    pool: list[str] = typer.Argument(
        ..., help="Pool files, directories or globs: parquet, jsonl, tsv/csv, txt (.gz too)."
    ),
    metadata: Path = typer.Option(
        ...,
        "--metadata",
        "-m",
        help="Entry list (.json/.txt/.parquet), or per-language: a directory of <lang>.txt|.json or a parquet with lang, entry.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (rerun the same command to resume)."),
    t: float = typer.Option(
        20000, "--t", help="Balancing threshold: entries matched by more rows are sampled down to about t."
    ),
    t_en: float = typer.Option(
        170000, "--t-en", help="Worldwide: English threshold; other languages get theirs from its tail share."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Sampling seed: the kept set depends only on pool, metadata, t and seed."
    ),
    device: str = typer.Option(
        "cpu", "--device", help="cpu, gpu or auto (gpu when cuDF and a CUDA device are present)."
    ),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the alt-text."),
    id_column: str = typer.Option(
        "auto", "--id-column", help="Column with a stable id; auto: `uid` if the pool has it, else <file>:<row>."
    ),
    lang_column: Optional[str] = typer.Option(
        None, "--lang-column", help="Column with the language code (per-language metadata)."
    ),
    image_column: Optional[str] = typer.Option(
        None,
        "--image-column",
        help="Column identifying the image (url, hash): of several matched texts of one image, one is chosen by the sampling hash before sampling.",
    ),
    columns: Optional[str] = typer.Option(
        None, "--columns", help="Comma-separated columns to keep in kept/ (default: all)."
    ),
    padding: Optional[str] = typer.Option(
        None, "--padding", help="metaclip1 or worldwide (default: worldwide for per-language metadata)."
    ),
    partition_size: str = typer.Option(
        "100000", "--partition-size", help="Rows per partition, or bytes such as 256MB."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local Dask workers (processes; default 1)."),
    threads_per_worker: Optional[int] = typer.Option(
        None, "--threads-per-worker", help="Default: all cores over the workers."
    ),
    memory_limit: str = typer.Option("auto", "--memory-limit", help="Per local worker, e.g. 8GB."),
    scheduler_address: Optional[str] = typer.Option(
        None, "--scheduler-address", help="Use an existing Dask cluster, e.g. tcp://host:8786."
    ),
    in_process: bool = typer.Option(False, "--in-process", help="No cluster: run every partition in this process."),
    rmm_pool_size: Optional[str] = typer.Option(None, "--rmm-pool-size", help="GPU: RMM pool per worker, e.g. 24GB."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="GPU cluster: tcp or ucx."),
    strict_utf8: bool = typer.Option(
        False, "--strict-utf8", help="Fail on invalid UTF-8 instead of counting and skipping the row."
    ),
    keep_matched_ids: bool = typer.Option(False, "--keep-matched-ids", help="Also write matched_entry_ids into kept/."),
    datacomp_subset: Optional[Path] = typer.Option(
        None, "--datacomp-subset", help="Also write the kept uids as DataComp's sorted .npy subset."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Curate a pool: match, count, balance, write kept rows (resumable)."""
    from .pipeline import CurateConfig, curate

    cfg = CurateConfig(
        inputs=tuple(pool),
        metadata=str(metadata),
        out=str(out),
        text_column=text_column,
        id_column=id_column,
        lang_column=lang_column,
        columns=_split(columns),
        padding=padding,
        t=t,
        t_en=t_en,
        seed=seed,
        partition_rows=_partition_rows(partition_size, pool),
        device=device,
        strict_utf8=strict_utf8,
        keep_matched_ids=keep_matched_ids,
        datacomp_subset=str(datacomp_subset) if datacomp_subset else None,
        image_column=image_column,
    )
    with LocalOrRemoteClient(
        cfg.device, in_process, workers, threads_per_worker, memory_limit, scheduler_address, rmm_pool_size, protocol
    ) as client:
        curate(cfg, client=client, progress=not quiet, log=typer.echo)
    typer.echo(f"outputs in {out}/ (kept/, matches/, entry_counts.parquet, summary.json)")


@app.command("balance")
def balance_command(
    out: Path = typer.Argument(..., help="Output directory of a finished `gpu-curate curate`."),
    t: Optional[float] = typer.Option(None, "--t", help="New threshold (default: the run's)."),
    t_en: Optional[float] = typer.Option(None, "--t-en", help="New English threshold (worldwide)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="New seed (default: the run's)."),
    into: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Write this balance to another directory (its own kept/, counts, summary), leaving OUT as it is: compare several t without copies.",
    ),
    in_process: bool = typer.Option(False, "--in-process", help="No cluster: run in this process."),
    scheduler_address: Optional[str] = typer.Option(None, "--scheduler-address", help="Use an existing Dask cluster."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Redo pass 2 (sampling) from the match index, without matching again.
    The previous balance stays visible until the new one is complete."""
    from .pipeline import balance

    with LocalOrRemoteClient("cpu", in_process, None, None, "auto", scheduler_address, None, None) as client:
        balance(out, t=t, t_en=t_en, seed=seed, client=client, progress=not quiet, log=typer.echo, into=into)


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("gpu_curate_demo"), "--out", "-o", help="Output directory."),
    t: float = typer.Option(20, "--t", help="Threshold; small, because the demo pool is small."),
) -> None:
    """Curate a bundled real sample: 3,000 LAION-style alt-texts against the WordNet synset heads."""
    import pyarrow.parquet as pq

    from . import demo_data
    from .pipeline import CurateConfig, curate

    typer.echo(
        f"demo: {demo_data.POOL.name} (3,000 alt-texts) x {demo_data.METADATA.name} (86,554 entries), t={t:g}, on a local Dask cluster"
    )
    cfg = CurateConfig(
        inputs=(str(demo_data.POOL),),
        metadata=str(demo_data.METADATA),
        out=str(out),
        text_column=demo_data.TEXT_COLUMN,
        t=t,
        partition_rows=1000,
    )
    with LocalOrRemoteClient("cpu", False, 1, None, "auto", None, None, None) as client:
        curate(cfg, client=client, log=typer.echo)
    counts = pq.read_table(out / "entry_counts.parquet").to_pandas().nlargest(5, "count")
    typer.echo(
        "most matched entries (sampled down to about t rows each): "
        + ", ".join(f"{e!r} {c}" for e, c in zip(counts.entry, counts["count"]))
    )
    kept = pq.read_table(out / "kept").slice(0, 3).column(demo_data.TEXT_COLUMN).to_pylist()
    typer.echo("some kept texts: " + " | ".join(kept))
    typer.echo(f"outputs in {out}/: kept/ (kept rows), matches/ (match index), entry_counts.parquet, summary.json")


from .metadata_cli import app as metadata_app  # noqa: E402

app.add_typer(metadata_app, name="metadata", help="Build and inspect metadata entry lists.")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CurateError as e:
        message = " ".join(str(e).splitlines())  # one line, whatever a message quotes
        typer.echo(f"gpu-curate: error: {message}", err=True)
        sys.exit(2)
