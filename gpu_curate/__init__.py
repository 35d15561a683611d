"""gpu_curate: MetaCLIP-style curation of image-text pools, exact on CPU and GPU.

import gpu_curate as gc
md = gc.Metadata.load("entries.json")
res = gc.match(["a photo of a dog"], md)
rb = gc.Rebalancer.open("curated/")           # online rebalancing of a finished run
"""

from .automaton import Automaton
from .errors import ClusterError, CurateError, DeviceError, InputError, MetadataError, OptionError
from .match import match
from .results import MatchResult
from .metadata import Metadata
from .rebalance import Rebalancer

__version__ = "0.1.0"
__all__ = [
    "Automaton",
    "ClusterError",
    "CurateError",
    "DeviceError",
    "InputError",
    "Metadata",
    "MetadataError",
    "MatchResult",
    "OptionError",
    "match",
    "Rebalancer",
    "__version__",
]
