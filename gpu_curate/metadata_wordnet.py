"""WordNet for the metadata builder: where its data is, and the synset-name
heads MetaCLIP takes from it (read through nltk's reader, never downloaded
at run time)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path


from .errors import CurateError

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
