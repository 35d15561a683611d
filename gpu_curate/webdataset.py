"""WebDataset tar shards as pool files: MetaCLIP's pool layout, img2dataset's
and NeMo Curator's webdataset output.

A tar holds samples: consecutive members sharing a key, WebDataset's rule
being the member's path up to the first dot of its basename
(`00042.jpg`, `00042.txt`, `00042.json` make sample `00042`; the rest,
`jpg`, is the member's suffix). Each sample gives one row with columns
`uid`, `key` and the text column:

- the text: the `.txt` member (`--tar-text txt`, the default; any other
  suffix such as `caption.txt` works alike), or a key of the `.json` member
  (`--tar-text json:caption`). A JSON list gives one row per item, an item
  being a text or a `[kind, text]` pair (MetaCLIP's `texts`); those rows'
  uids are `<uid>:<i>`. A sample without its text is a row with a null text
  (counted in the summary, never kept).
- the uid: the `.json` member's `uid` (a string or an integer) if present,
  else the key (`__key__`).

The tar is streamed once (`r|*`: .tar, .tar.gz, .tgz): only text and JSON
members are read; image payloads are skipped by the tar reader, never held.
One partition per tar, so memory is bounded by one tar's texts.
"""

from __future__ import annotations

import json
import tarfile
import zlib

import pyarrow as pa

from .errors import CurateError, InputError
from .fs import one_line, open_file, quote_path

DEFAULT_TAR_TEXT = "txt"
UID, KEY = "uid", "key"
_JSON = "json"


def check_tar_text(spec: str) -> tuple[str, str | None]:
    """(member suffix, JSON key or None) of a --tar-text value: `txt`, `caption.txt`, `json:caption`."""
    if spec.startswith(_JSON + ":"):
        key = spec[len(_JSON) + 1 :]
        if not key:
            raise CurateError("--tar-text: json: needs a key, e.g. json:caption")
        return _JSON, key
    if not spec or "/" in spec or spec.startswith("."):
        raise CurateError(f"--tar-text: {spec!r} is neither a member suffix (txt) nor json:KEY")
    return spec.lower(), None


def sample_key(name: str) -> tuple[str, str] | None:
    """(key, suffix) of a member name by WebDataset's rule; None for a name
    with no suffix (not part of any sample, as in WebDataset)."""
    directory, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{directory}/{stem}" if directory else stem), suffix.lower()


def read_tar(path: str, text_column: str, tar_text: str = DEFAULT_TAR_TEXT) -> pa.Table:
    """One row per sample (several for a JSON list of texts): uid, key, text (binary)."""
    if text_column in (UID, KEY):
        raise InputError(f"{quote_path(path)}: --text-column {text_column!r} is a column tars already have")
    suffix, json_key = check_tar_text(tar_text)
    rows = _Rows(path, suffix, json_key)
    try:
        with open_file(path) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            key, members = None, {}
            for m in tar:
                split = sample_key(m.name) if m.isfile() else None
                if split is None:
                    continue
                if split[0] != key:
                    rows.add(key, members)
                    key, members = split[0], {}
                if split[1] in members:
                    raise InputError(f"{quote_path(path)}: member {m.name!r} appears twice in sample {key!r}")
                wanted = split[1] in (suffix, _JSON)
                members[split[1]] = tar.extractfile(m).read() if wanted else None  # None: present, not read
            rows.add(key, members)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise InputError(f"{quote_path(path)}: not a readable tar ({one_line(e)})") from None
    return rows.table(text_column)


class _Rows:
    """The rows of one tar, built sample by sample."""

    def __init__(self, path: str, suffix: str, json_key: str | None):
        self.path, self.suffix, self.json_key = path, suffix, json_key
        self.uids: list = []
        self.keys: list[str] = []
        self.texts: list[bytes | None] = []

    def add(self, key: str | None, members: dict) -> None:
        if key is None:
            return
        meta = self._json(key, members.get(_JSON))
        uid = meta.get(UID) if isinstance(meta, dict) else None
        uid = key if uid is None else uid
        if isinstance(uid, bool) or not isinstance(uid, (str, int)):
            raise InputError(f"{self._where(key)}: uid must be a string or an integer, not {uid!r}")
        if self.json_key is None:
            self._row(uid, key, members.get(self.suffix))
            return
        value = meta.get(self.json_key) if isinstance(meta, dict) else None
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._row(f"{uid}:{i}", key, self._text_of(key, item))
        else:
            self._row(uid, key, self._text_of(key, value))

    def _json(self, key: str, data: bytes | None):
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as e:  # invalid JSON or invalid UTF-8
            raise InputError(f"{self._where(key)}: its json is not valid JSON ({one_line(e)})") from None

    def _text_of(self, key: str, value) -> bytes | None:
        if isinstance(value, (list, tuple)) and value and isinstance(value[-1], str):
            value = value[-1]  # MetaCLIP's [kind, text]
        if value is None:
            return None
        if not isinstance(value, str):
            raise InputError(f"{self._where(key)}: json key {self.json_key!r} holds {value!r}, not a text")
        return value.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8: counted, not fatal

    def _row(self, uid, key: str, text: bytes | None) -> None:
        self.uids.append(uid)
        self.keys.append(key)
        self.texts.append(text)

    def _where(self, key: str) -> str:
        return f"{quote_path(self.path)} sample {key!r}"

    def table(self, text_column: str) -> pa.Table:
        try:
            uids = pa.array(self.uids, pa.string() if not self.uids else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise InputError(f"{quote_path(self.path)}: uids mix strings and integers (or exceed int64)") from None
        return pa.table(
            {
                UID: uids,
                KEY: pa.array(self.keys, pa.string()),
                text_column: pa.array(self.texts, pa.large_binary()),
            }
        )
