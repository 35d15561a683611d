"""A small real pool and metadata list for `gpu-curate demo` (sources: README.md here)."""

from pathlib import Path

HERE = Path(__file__).parent
POOL = HERE / "laion_style_3k.parquet"
METADATA = HERE / "wordnet30_synset_heads.txt"
TEXT_COLUMN = "TEXT"
