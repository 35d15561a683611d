"""Errors a user can cause or must act on. The CLI prints them as one line and exits 2."""


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


class OutputError(CurateError, RuntimeError):
    """An output cannot be written or read back (a full disk, no permission,
    a damaged file), or --out is in use by another run; names the path."""


class RunInterrupted(CurateError, RuntimeError):
    """The cluster lost what a task needed (a worker or the scheduler died too
    often); what finished is kept, and rerunning the command resumes."""


class ClusterError(CurateError, RuntimeError):
    """The Dask cluster cannot be reached or started (names the address)."""


class MissingExtraError(CurateError, ImportError):
    """An optional extra is not installed (names the pip install that adds it)."""
