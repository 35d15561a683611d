"""Errors a user can cause. The CLI prints them as one line and exits 2."""


class CurateError(Exception):
    """Base class: bad input, bad options, missing hardware or packages."""


class MetadataError(CurateError, ValueError):
    """A metadata list that cannot be used (names the file and line/entry)."""


class InputError(CurateError, ValueError):
    """A pool file or column that cannot be read (names the file/row/column)."""


class OptionError(CurateError, ValueError):
    """Options out of range or contradicting each other (names the option)."""


class DeviceError(CurateError, RuntimeError):
    """The requested device or its libraries are not available."""


class ClusterError(CurateError, RuntimeError):
    """The Dask cluster cannot be reached or started (names the address)."""


class MissingExtraError(CurateError, ImportError):
    """An optional extra is not installed (names the pip install that adds it)."""
