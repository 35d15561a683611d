"""Outputs on object storage: `--out s3://bucket/run` (any fsspec URL that is
not a local path) stages the run in a local work directory and publishes it.

Object stores have no rename, symlink or flock, on which the local output
directory rests (outdir.py, storage.py, lock.py). So the whole run happens,
unchanged, in a local work directory (--work-dir, default a per-URL directory
under the user cache): locking, resume and the generation switch work there
as for a local --out. Then `publish` uploads the visible generation, object
by object, in an order that a reader of the store never sees mixed:

    run.json                      what produced the outputs (its `pass1` claims the URL)
    matches/part-N.arrow          the match index, then its _part-N.json markers
    generations/<id>/...          every file of the generation, summary.json last
    current.json                  {"generation": "<id>", ...}: ONE small PUT, written last

A PUT is atomic per object, so current.json is the switch: it names a
generation only once every object of it is in the store. Superseded
generations are removed from the store after it. An upload that is killed
leaves the previous current.json (or none); rerunning the command skips the
objects already there with the same size and uploads the rest.

Not protected: two machines with different work directories publishing to
the same URL at once. There is no lock on a store; only run.json's `pass1`
identity refuses a different run, checked before any work.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import CurateError, InputError, OptionError, OutputError
from .executor import ProgressBar
from .faults import checkpoint
from .fs import filesystem_error, one_line, quote_path, split_url
from .outdir import GENERATIONS, OutDir
from .storage import write_atomic

CURRENT = "current.json"
RUN = "run.json"


def default_work_dir(url: str) -> Path:
    """Where a run for `url` is staged: $XDG_CACHE_HOME (or ~/.cache)/gpu_curate/out/<sha256(url)[:16]>."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "gpu_curate" / "out" / hashlib.sha256(url.encode()).hexdigest()[:16]


def resolve_out(value, work_dir=None, option: str = "--out") -> tuple[str, Store | None]:
    """(local directory to run in, Store to publish to or None) of an output
    option. A local path or file:// URL is the directory itself (--work-dir
    is then refused); any other URL is staged in the work directory. A store
    that cannot be reached, an unknown protocol or a missing filesystem
    package is one line here, before any work."""
    path, store = open_store(value)
    if store is None:
        if work_dir is not None:
            raise OptionError(
                f"--work-dir is for an --out on object storage (a URL); {option} {quote_path(value)} is local"
            )
        return path, None
    return str(Path(work_dir) if work_dir is not None else default_work_dir(store.url)), store


def open_store(value) -> tuple[str | None, Store | None]:
    """(local path, None) for a path or file:// URL; (None, a reachable Store) for any other URL."""
    value = str(value)
    try:
        fs, path = split_url(value)
    except CurateError:
        raise
    except Exception as e:  # noqa: BLE001 (a filesystem that connects when made, ftp://, and cannot)
        raise filesystem_error(value, e) from None
    if fs is None:
        return path, None
    store = Store(value.rstrip("/"), fs, path.rstrip("/"))
    store.check_reachable()
    return None, store


@dataclass
class Store:
    """The URL an --out names on object storage: `fs` and the path of it inside."""

    url: str
    fs: object
    root: str

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def url_of(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def ask(self, call, *args, missing=None, **kwargs):
        """`call(*args)` on the store: `missing` where there is no such object,
        one line (InputError) for any other failure, whatever its type."""
        try:
            return call(*args, **kwargs)
        except FileNotFoundError:
            return missing
        except Exception as e:  # noqa: BLE001 (botocore, aiohttp, gcsfs... raise their own types)
            raise filesystem_error(self.url, e) from None

    def check_reachable(self) -> None:
        """List the URL once (an unreachable store fails here), and where the
        store has buckets, check that the bucket exists."""
        if self.ask(self.fs.ls, self.root, detail=False) is None:
            bucket = _bucket(self.fs, self.root)
            if bucket is not None and not self.ask(self.fs.exists, bucket):
                raise InputError(f"{quote_path(self.url)}: no such bucket {bucket!r}")

    def put(self, local: Path, rel: str) -> None:
        """One object from a local file, streamed by fsspec (memory bounded by its block size)."""
        url = self.url_of(rel)
        checkpoint(url, "before-upload")
        self.fs.put_file(str(local), self.path(rel))
        checkpoint(url, "after-upload")

    def get(self, rel: str, local: str) -> None:
        """One object into a local file; a missing one or any failure of the store is one line."""
        if self.ask(self.fs.get_file, self.path(rel), local, missing=False) is False:
            raise InputError(f"{quote_path(self.url_of(rel))}: no such object (the published run is incomplete)")

    def read_json(self, rel: str) -> dict | None:
        """A JSON object of the store (None where there is none)."""
        data = self.ask(self.fs.cat_file, self.path(rel))
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise OutputError(f"{quote_path(self.url_of(rel))}: cannot read ({one_line(e)})") from None

    def current(self) -> dict:
        """current.json: the visible generation's id and its outputs' paths relative to the URL."""
        current = self.read_json(CURRENT)
        if current is None:
            raise InputError(f"{quote_path(self.url)}: no current.json (no run was published here yet)")
        return current

    def held_run(self) -> dict | None:
        """The store's run.json; a URL holding objects but no run.json is refused
        (it is not the output of a gpu-curate run, and publishing removes objects)."""
        run = self.read_json(RUN)
        if run is None and self.objects():
            raise InputError(
                f"{quote_path(self.url)}: holds objects but no run.json (not the outputs of a gpu-curate run); "
                "use a new --out"
            )
        return run

    def objects(self) -> dict[str, int]:
        """Every object under the URL: its path relative to it -> its size."""
        found = self.ask(self.fs.find, self.root, detail=True, missing={})
        prefix = self.root + "/"
        return {
            p[len(prefix) :]: int(info.get("size") or 0)
            for p, info in found.items()
            if p.startswith(prefix) and info.get("type", "file") != "directory"
        }


def _bucket(fs, root: str) -> str | None:
    """The bucket of a path, on stores that have buckets (s3fs, gcsfs: `split_path`)."""
    split = getattr(fs, "split_path", None)
    return (split(root)[0] or None) if split is not None else None


def publish(store: Store, lay: OutDir, log: Callable[[str], None] = lambda s: None, progress: bool = False) -> dict:
    """Upload the visible generation of the work directory `lay` to `store`
    (run.json, matches/, the generation, then current.json), remove the
    store's superseded generations, and return what was uploaded and skipped.
    Any failure of the store is one OutputError; rerunning finishes the upload."""
    generation = lay.current_generation()
    if generation is None or not generation.summary.exists():
        raise OutputError(f"{quote_path(lay.out)}: no finished generation to publish")
    files = _plan(lay, generation)
    log(f"publishing {len(files)} files to {store.url}")
    try:
        return _upload(store, files, generation.name, log, progress)
    except CurateError:
        raise
    except Exception as e:  # noqa: BLE001 (the store's own exception types, or an injected fault)
        raise OutputError(
            f"{quote_path(store.url)}: cannot publish ({type(e).__name__}: {one_line(e)}); "
            "rerun the same command to finish the upload"
        ) from None


def _always(rel: str) -> bool:
    """Rewritten at each publish although an object of the same size may be
    there: run.json's config follows the visible balance; a summary's timings vary."""
    return rel == RUN or rel.endswith("/summary.json")


def _plan(lay: OutDir, generation) -> list[tuple[Path, str]]:
    """(local file, path in the store) of every output, in upload order."""
    matches = sorted(p for p in lay.matches.iterdir() if not p.name.startswith(".")) if lay.matches.is_dir() else []
    gen = sorted(
        (p for p in generation.root.rglob("*") if p.is_file() and not _hidden(p.relative_to(generation.root))),
        key=lambda p: (p == generation.summary, p.name.startswith("_"), p),  # shards, markers, summary last
    )
    files = [(lay.run, RUN)]
    files += [(p, f"matches/{p.name}") for p in sorted(matches, key=lambda p: (p.name.startswith("_"), p.name))]
    files += [(p, f"{GENERATIONS}/{generation.name}/{p.relative_to(generation.root).as_posix()}") for p in gen]
    return files


def _hidden(rel: Path) -> bool:
    """A temporary of storage.py (or any dot name): never published."""
    return any(part.startswith(".") for part in rel.parts)


def _upload(store: Store, files, generation: str, log, progress: bool) -> dict:
    there = store.objects()
    done = {"uploaded": 0, "uploaded_bytes": 0, "skipped": 0, "skipped_bytes": 0}
    with ProgressBar(f"upload to {store.url}", len(files), progress) as advance:
        for local, rel in files:
            size = local.stat().st_size
            if there.get(rel) == size and not _always(rel):
                done["skipped"] += 1
                done["skipped_bytes"] += size
            else:
                store.put(local, rel)
                done["uploaded"] += 1
                done["uploaded_bytes"] += size
            advance()
    current = {
        "generation": generation,
        "kept": f"{GENERATIONS}/{generation}/kept",
        "entry_counts": f"{GENERATIONS}/{generation}/entry_counts.parquet",
        "summary": f"{GENERATIONS}/{generation}/summary.json",
    }
    data = (json.dumps(current, indent=1, sort_keys=True) + "\n").encode()
    checkpoint(store.url_of(CURRENT), "before-upload")
    store.fs.pipe_file(store.path(CURRENT), data)  # one PUT: the switch
    checkpoint(store.url_of(CURRENT), "after-upload")
    removed = _remove_superseded(store, generation)
    log(
        f"published to {store.url}: {done['uploaded']} objects uploaded ({_mb(done['uploaded_bytes'])}), "
        f"{done['skipped']} already there ({_mb(done['skipped_bytes'])}), {removed} superseded generations removed; "
        f"current.json -> {GENERATIONS}/{generation}"
    )
    return {**done, "url": store.url, "generation": generation, "generations_removed": removed}


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _remove_superseded(store: Store, generation: str) -> int:
    """Remove the store's generations but `generation` (after current.json names it)."""
    try:
        entries = store.fs.ls(store.path(GENERATIONS), detail=False)
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in sorted(entries):
        if entry.rstrip("/").rsplit("/", 1)[-1] != generation:
            store.fs.rm(entry, recursive=True)
            removed += 1
    return removed


def fetch(store: Store, lay: OutDir, log: Callable[[str], None] = lambda s: None) -> None:
    """Download what rebalancing a published run needs into the empty work
    directory `lay`, on a machine that did not curate it: the match index,
    the visible generation's entry counts and summary (made `current`), and
    run.json last (it marks the work directory as holding the run, so a
    download that is cut off is simply redone). The caller holds lay's lock."""
    current = store.current()
    generation = lay.generation(current["generation"])
    names = sorted(store.objects())
    matches = sorted((n for n in names if n.startswith("matches/")), key=lambda n: ("/_" in n, n))  # markers last
    wanted = [*matches, *(f"{GENERATIONS}/{generation.name}/{n}" for n in ("entry_counts.parquet", "summary.json"))]
    log(f"{quote_path(store.url)}: fetching the match index and counts ({len(wanted)} objects) into {lay.out}")
    for rel in [*wanted, RUN]:
        write_atomic(lay.out / rel, lambda tmp, rel=rel: store.get(rel, tmp))
    lay.switch(generation)


def current_outputs(url: str) -> dict[str, str]:
    """The URLs of what a published run's current.json names: `generation`
    (its id), `kept` (a parquet dataset), `entry_counts`, `summary`, plus
    `run` and `matches`. Read current.json once and open these: a later
    publish only adds a new generation before it switches."""
    fs, path = split_url(url)
    if fs is None:
        raise InputError(f"{quote_path(url)}: a local --out; read DIR/kept (a link to the visible generation)")
    store = Store(url.rstrip("/"), fs, path.rstrip("/"))
    current = store.current()
    return {
        "generation": current["generation"],
        **{k: store.url_of(current[k]) for k in ("kept", "entry_counts", "summary")},
        "run": store.url_of(RUN),
        "matches": store.url_of("matches"),
    }
