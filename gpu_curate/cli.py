"""The `gpu-curate` command line. Each command is a thin shell over the Python API."""

from __future__ import annotations

import functools
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .checks import check_cluster_options
from .cluster import LocalOrRemoteClient
from .errors import CurateError, OptionError

INTERRUPTED = "interrupted; rerun the same command to resume"

app = typer.Typer(
    name="gpu-curate",
    help="MetaCLIP-style curation of image-text pools, exact on CPU and GPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: flags show as flags (typer's rich panels print <bool> beside them)
)


class Interrupted(Exception):
    """Ctrl-C, carried past click (which would print "Aborted!" and exit 1) to main()."""


def interruptible(command):
    """Let a command's Ctrl-C reach main() as Interrupted; the command's own
    `with` blocks (the Dask cluster) have closed by then."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted() from None

    return run


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpu-curate {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """MetaCLIP-style curation of image-text pools, exact on CPU and GPU."""


# Options that `match` and `curate` share, declared once.
PoolArg = Annotated[
    list[str],
    typer.Argument(
        help="Pool files, directories or globs, local or fsspec URLs (s3://, gs://, hf://): parquet, jsonl, tsv/csv, txt (.gz too), WebDataset .tar."
    ),
]
MetadataOpt = Annotated[
    Path,
    typer.Option(
        "--metadata",
        "-m",
        help="Entry list (.json/.txt/.parquet), or per-language: a directory of <lang>.txt|.json|.parquet or a parquet with lang, entry.",
    ),
]
TextColumnOpt = Annotated[str, typer.Option("--text-column", help="Column holding the alt-text.")]
IdColumnOpt = Annotated[
    str,
    typer.Option("--id-column", help="Column with a stable id; auto: `uid` if the pool has it, else <file>:<row>."),
]
LangColumnOpt = Annotated[
    Optional[str], typer.Option("--lang-column", help="Column with the language code (per-language metadata).")
]
PaddingOpt = Annotated[
    Optional[str],
    typer.Option("--padding", help="metaclip1 or worldwide (default: worldwide for per-language metadata)."),
]
WorkDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--work-dir",
        help="With an --out on object storage (s3://, gs://, ...): the local directory the run is staged in before it is published (default: a directory per URL under ~/.cache/gpu_curate/out).",
    ),
]
TarTextOpt = Annotated[
    str,
    typer.Option(
        "--tar-text",
        help="WebDataset tars: the member suffix holding the text (txt), or a key of the .json (json:caption).",
    ),
]
StrictUtf8Opt = Annotated[
    bool,
    typer.Option(
        "--strict-utf8",
        help="Fail on the first text that is not valid UTF-8, instead of matching it on its bytes and counting it.",
    ),
]


@app.command("match")
@interruptible
def match_command(
    pool: PoolArg,
    metadata: MetadataOpt,
    out: str = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output directory, a path or an fsspec URL (s3://, gs://, ...): part-N.parquet per partition, every row with uid and matched_entry_ids.",
    ),
    text_column: TextColumnOpt = "text",
    id_column: IdColumnOpt = "auto",
    lang_column: LangColumnOpt = None,
    padding: PaddingOpt = None,
    partition_size: str = typer.Option(
        "100000",
        "--partition-size",
        help="Rows per output shard (memory is bounded by it), or a size such as 256MB: rows of that size by the first parquet file's average row (all columns; 200 B if none).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, gpu or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    strict_utf8: StrictUtf8Opt = False,
    tar_text: TarTextOpt = "txt",
) -> None:
    """Match every row of a pool against the metadata and write its match set (no counting, no sampling)."""
    from .match import default_threads
    from .match_pool import match_pool
    from .pipeline import CurateConfig
    from .summary import percent

    if threads is not None and threads < 1:
        raise OptionError(f"--threads must be at least 1, got {threads}")
    cfg = CurateConfig(
        inputs=tuple(pool),
        metadata=str(metadata),
        out=str(out),
        text_column=text_column,
        id_column=id_column,
        lang_column=lang_column,
        padding=padding,
        partition_rows=_partition_rows(partition_size, pool),
        device=device,
        strict_utf8=strict_utf8,
        threads=threads or default_threads(),
        tar_text=tar_text,
    )
    n = match_pool(cfg)
    matched = f"{n['rows_matched']:,} matched ({percent(n['rows_matched'], n['rows_in'])})" if n["rows_in"] else "0"
    typer.echo(
        f"{n['rows_in']:,} rows, {matched}, {n['pairs_matched']:,} pairs; null text {n['rows_null_text']:,}, "
        f"invalid UTF-8 {n['rows_invalid_utf8']:,} (matched on their bytes) -> {out}/"
    )


# --partition-size auto: what fills a CPU task (a few seconds of walk on one
# core) or a GPU (hundreds of MB of text per kernel launch, which also keeps
# the per-partition bookkeeping of a worker small next to the walk).
AUTO_PARTITION = {"cpu": "100000", "gpu": "256MB"}


def _partition_rows(size: str, inputs: list[str], device: str = "cpu") -> int:
    """--partition-size: a row count ("100000") or a size ("256MB"),
    converted to rows by the first parquet file's average uncompressed row
    size over all its columns (200 B a row without parquet); auto:
    AUTO_PARTITION for the device."""
    if size.strip() == "auto":
        size = AUTO_PARTITION["gpu" if device == "gpu" else "cpu"]
    if size.strip().isdigit():
        rows = int(size)
    else:
        import dask.utils

        from .pool import find_pool
        from .readers import parquet_file

        try:
            target = dask.utils.parse_bytes(size)
        except ValueError:
            raise OptionError(f"--partition-size: {size!r} is neither a row count nor a size like 256MB") from None
        parquet = [f.path for f in find_pool(inputs).files if f.format == "parquet"]
        row_bytes = 200  # no parquet to measure: a guess for alt-text lines
        if parquet:
            meta = parquet_file(parquet[0]).metadata
            row_bytes = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)) / max(
                meta.num_rows, 1
            )
        rows = int(target / max(row_bytes, 1))
    if rows < 1:
        raise OptionError(f"--partition-size must be at least one row, got {size!r}")
    return rows


def _auto_device() -> str:
    from .match import resolve_device

    return resolve_device("auto")


def _command_line() -> str:
    """This invocation as one shell-quoted line, for run.json, summary.json and the datacard."""
    import shlex

    return shlex.join(["gpu-curate", *sys.argv[1:]])


def _split(columns: Optional[str]) -> Optional[tuple[str, ...]]:
    return tuple(c.strip() for c in columns.split(",") if c.strip()) if columns else None


@app.command("curate")
@interruptible
def curate_command(
    pool: PoolArg,
    metadata: MetadataOpt,
    out: str = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output directory, a path or file:// URL, or an fsspec URL (s3://, gs://, ...): staged locally, then published (rerun the same command to resume).",
    ),
    work_dir: WorkDirOpt = None,
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
        "cpu",
        "--device",
        help="cpu, gpu or auto (gpu when cuDF and a CUDA device are present; GPU_CURATE_EMULATE=1 makes gpu the emulated device, for development).",
    ),
    gpu_reader: Optional[str] = typer.Option(
        None,
        "--gpu-reader",
        help="GPU: how parquet is read: cudf (on the GPU; the default) or pyarrow (on the host, the text copied to the GPU once; the emulated device's only one).",
    ),
    text_column: TextColumnOpt = "text",
    id_column: IdColumnOpt = "auto",
    lang_column: LangColumnOpt = None,
    image_column: Optional[str] = typer.Option(
        None,
        "--image-column",
        help="Column identifying the image (url, hash): of several matched texts of one image, one is chosen by the sampling hash before sampling.",
    ),
    columns: Optional[str] = typer.Option(
        None, "--columns", help="Comma-separated columns to keep in kept/ (default: all)."
    ),
    padding: PaddingOpt = None,
    partition_size: str = typer.Option(
        "auto",
        "--partition-size",
        help="Rows per partition, or a size such as 256MB: rows of that size by the first parquet file's average row (all columns, uncompressed; 200 B if none); auto: 100000 rows on the CPU, 256MB on the GPU.",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local Dask workers (processes; default 1)."),
    threads_per_worker: Optional[int] = typer.Option(
        None, "--threads-per-worker", help="Default: all cores over the workers."
    ),
    memory_limit: Optional[str] = typer.Option(
        None,
        "--memory-limit",
        help="Per local worker, e.g. 8GB (default: auto, the machine's memory over the workers).",
    ),
    scheduler_address: Optional[str] = typer.Option(
        None, "--scheduler-address", help="Use an existing Dask cluster, e.g. tcp://host:8786."
    ),
    in_process: bool = typer.Option(False, "--in-process", help="No cluster: run every partition in this process."),
    dashboard: bool = typer.Option(
        False,
        "--dashboard",
        help="Serve the Dask dashboard of the local cluster on a free port (printed); needs bokeh.",
    ),
    rmm_pool_size: Optional[str] = typer.Option(None, "--rmm-pool-size", help="GPU: RMM pool per worker, e.g. 24GB."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="GPU cluster: tcp or ucx."),
    strict_utf8: StrictUtf8Opt = False,
    keep_matched_ids: bool = typer.Option(False, "--keep-matched-ids", help="Also write matched_entry_ids into kept/."),
    datacomp_subset: Optional[Path] = typer.Option(
        None, "--datacomp-subset", help="Also write the kept uids as DataComp's sorted .npy subset."
    ),
    tar_text: TarTextOpt = "txt",
    verify_inputs: bool = typer.Option(
        False,
        "--verify-inputs",
        help="Also hash every pool file, so a rerun compares contents, not only sizes and times.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Curate a pool: match, count, balance, write kept rows (resumable)."""
    from .fs import local_path
    from .pipeline import CurateConfig, curate

    check_cluster_options(
        in_process, workers, threads_per_worker, memory_limit, scheduler_address, dashboard, rmm_pool_size, protocol
    )
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
        partition_rows=_partition_rows(partition_size, pool, device if device != "auto" else _auto_device()),
        device=device,
        gpu_reader=gpu_reader,
        strict_utf8=strict_utf8,
        keep_matched_ids=keep_matched_ids,
        datacomp_subset=str(datacomp_subset) if datacomp_subset else None,
        image_column=image_column,
        tar_text=tar_text,
        verify_inputs=verify_inputs,
        command=_command_line(),
    )
    cluster = partial(  # started by curate() once its checks passed, if work remains
        LocalOrRemoteClient,
        cfg.device,
        in_process,
        workers=workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        scheduler_address=scheduler_address,
        rmm_pool_size=rmm_pool_size,
        protocol=protocol,
        dashboard=dashboard,
        log=typer.echo,
    )
    curate(cfg, cluster=cluster, progress=not quiet, log=typer.echo, work_dir=work_dir)
    if local_path(out) is None:  # published to object storage
        typer.echo(f"outputs in {out}/: current.json names the visible generation, generations/<id>/kept the kept rows")
    else:
        typer.echo(f"outputs in {out}/ (kept/, matches/, entry_counts.parquet, summary.json)")


@app.command("balance")
@interruptible
def balance_command(
    out: str = typer.Argument(
        ..., help="Output directory of a finished `gpu-curate curate`, or the URL it published to."
    ),
    t: Optional[float] = typer.Option(None, "--t", help="New threshold (default: the run's)."),
    t_en: Optional[float] = typer.Option(None, "--t-en", help="New English threshold (worldwide)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="New seed (default: the run's)."),
    into: Optional[str] = typer.Option(
        None,
        "--out",
        "-o",
        help="Write this balance to another directory or URL (its own kept/, counts, summary), leaving OUT as it is: compare several t without copies.",
    ),
    work_dir: WorkDirOpt = None,
    in_process: bool = typer.Option(False, "--in-process", help="No cluster: run in this process."),
    scheduler_address: Optional[str] = typer.Option(None, "--scheduler-address", help="Use an existing Dask cluster."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Redo pass 2 (sampling) from the match index, without matching again.
    The previous balance stays visible until the new one is complete."""
    from .pipeline import balance

    check_cluster_options(in_process, None, None, None, scheduler_address, False)
    with LocalOrRemoteClient("cpu", in_process, scheduler_address=scheduler_address) as client:
        balance(
            out,
            t=t,
            t_en=t_en,
            seed=seed,
            client=client,
            progress=not quiet,
            log=typer.echo,
            command=_command_line(),
            into=into,
            work_dir=work_dir,
        )


@app.command("demo")
@interruptible
def demo_command(
    out: str = typer.Option("gpu_curate_demo", "--out", "-o", help="Output directory."),
    t: float = typer.Option(20, "--t", help="Threshold; small, because the demo pool is small."),
) -> None:
    """Curate a bundled real sample: 3,000 LAION-style alt-texts against the WordNet synset heads."""
    import pyarrow.parquet as pq

    from . import demo_data
    from .fs import local_out
    from .pipeline import CurateConfig, curate

    out = Path(local_out(out))
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
        command=_command_line(),
    )
    curate(cfg, cluster=partial(LocalOrRemoteClient, "cpu", False, workers=1), log=typer.echo)
    counts = pq.read_table(out / "entry_counts.parquet").to_pandas().nlargest(5, "count")
    typer.echo(
        "most matched entries (sampled down to about t rows each): "
        + ", ".join(f"{e!r} {c}" for e, c in zip(counts.entry, counts["count"]))
    )
    kept = pq.read_table(out / "kept").slice(0, 3).column(demo_data.TEXT_COLUMN).to_pylist()
    typer.echo("some kept texts: " + " | ".join(kept))
    typer.echo(f"outputs in {out}/: kept/ (kept rows), matches/ (match index), entry_counts.parquet, summary.json")
    _demo_report(out)


def _demo_report(out: Path) -> None:
    from .errors import MissingExtraError
    from .report import write_report

    try:
        folder = write_report(out)
    except MissingExtraError:
        typer.echo(
            "for plots and a datacard of this run: pip install 'gpu_curate[report]', then gpu-curate report " + str(out)
        )
        return
    typer.echo(f"report (plots, head/tail table, datacard): {folder}/datacard.md")


@app.command("report")
def report_command(
    out: str = typer.Argument(
        ..., help="Output directory of a finished `gpu-curate curate` or `balance`, or the URL it published to."
    ),
) -> None:
    """Plots, a head/tail table and a datacard of a finished run, in OUT/report/ (needs matplotlib: the report extra)."""
    from .report import write_report

    folder = write_report(out)
    typer.echo(f"report in {folder}/: datacard.md, head_tail.md and the plots (*.png)")


from .metadata_cli import app as metadata_app  # noqa: E402

app.add_typer(metadata_app, name="metadata", help="Build and inspect metadata entry lists.")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2;
    Ctrl-C one line and exit status 130 (128 + SIGINT), as shells do."""
    try:
        app()
    except CurateError as e:
        message = " ".join(str(e).splitlines())  # one line, whatever a message quotes
        typer.echo(f"gpu-curate: error: {message}", err=True)
        sys.exit(2)
    except Interrupted:
        typer.echo(f"gpu-curate: {INTERRUPTED}", err=True)
        sys.exit(130)
