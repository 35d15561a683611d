"""The `gpu-curate` command line. Each command is a thin shell over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

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
    input: Path = typer.Option(..., "--input", "-i", help="Pool file: parquet, jsonl, tsv/csv or txt (one text per line)."),
    metadata: Path = typer.Option(..., "--metadata", "-m", help="Entry list: .json list, .txt (one per line) or .parquet."),
    out: Path = typer.Option(..., "--out", "-o", help="Output parquet: one row per input row with matched_entry_ids."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the texts."),
    padding: str = typer.Option("metaclip1", "--padding", help="Entry padding rule: metaclip1 or worldwide."),
    device: str = typer.Option("cpu", "--device", help="cpu, gpu or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Match every text of one file against the metadata and write the match sets."""
    import pyarrow as pa

    from .io import read_table, write_parquet_atomic
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


from .metadata_cli import app as metadata_app  # noqa: E402

app.add_typer(metadata_app, name="metadata", help="Build and inspect metadata entry lists.")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CurateError as e:
        typer.echo(f"gpu-curate: error: {e}", err=True)
        sys.exit(2)
