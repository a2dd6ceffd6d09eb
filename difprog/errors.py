"""The exceptions difprog raises for bad input: each names the gate or layer at fault."""

__all__ = [
    "ArgumentError",
    "CheckpointError",
    "ConfigMismatchError",
    "DataError",
    "DifprogError",
    "DownloadError",
    "DtypeError",
    "LabelError",
    "NonFiniteLossError",
    "PeerError",
    "RuleError",
    "RunDirectoryError",
    "ShapeError",
    "WriteError",
]


class DifprogError(Exception):
    """Base class of every error difprog raises on purpose."""


class ShapeError(DifprogError, ValueError):
    """Arrays whose shapes or ranks a gate or layer cannot take."""


class DtypeError(DifprogError, TypeError):
    """An argument of the wrong type or dtype, such as an integer array where a derivative is
    needed."""


class RuleError(DifprogError, ValueError):
    """A backward or tangent rule that returned the wrong number, shapes or structure of values."""


class LabelError(DifprogError, ValueError):
    """Class labels outside [0, number of classes)."""


class ArgumentError(DifprogError, ValueError):
    """A gate, layer or function given a setting it cannot use, or missing one it needs."""


class NonFiniteLossError(DifprogError, ValueError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class CheckpointError(DifprogError, ValueError):
    """A checkpoint that is missing, corrupted, or does not match the tree it is loaded into."""


class PeerError(CheckpointError):
    """A step every process of a multi-process run takes together (a sharded checkpoint's save)
    failed on another process; that process's own error says why."""


class RunDirectoryError(DifprogError, OSError):
    """An output directory a run cannot own: empty name, a file, not writable, or in use."""


class WriteError(DifprogError, OSError):
    """A file that could not be written (a full disk, no permission); the previous one is intact."""


class ConfigMismatchError(DifprogError, ValueError):
    """A resume whose settings differ from those its checkpoint was trained with."""


class DataError(DifprogError, ValueError):
    """A data file that is not what it claims to be (a corrupt idx file, other contents)."""


class DownloadError(DifprogError, OSError):
    """A download that failed (offline, a server error, a truncated transfer, a wrong
    checksum); nothing is left where the file would have gone."""
