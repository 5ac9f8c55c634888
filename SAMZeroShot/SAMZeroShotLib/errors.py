"""The library's exceptions, in one family (no heavy imports).

:class:`UserError` is every problem the user can fix: a missing or damaged file, a node that
cannot be used, an unknown setting, an output that cannot be written. Its message is one line
that names the file (or node, or setting) and the problem, and says what to do where that is
not obvious. The command line prints it and exits with code 2 (``cli.main``, the one place);
the Slicer module shows it in an error box. Anything else raised is a fault of this software.

:class:`Cancelled` is not an error: the user asked to stop.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave: ``file`` (or node, or setting) and ``problem``."""

    def __init__(self, problem: str, file: object | None = None):
        super().__init__(f"{file}: {problem}" if file is not None else problem)
        self.file = None if file is None else str(file)
        self.problem = problem

    def __reduce__(self):  # pickled as made (a cluster's worker sends errors back to the client)
        return type(self), (self.problem, self.file)


class SettingError(UserError, ValueError):
    """An unknown or impossible setting (model, strategy, window, device, backend, ...)."""


class InputError(UserError, ValueError):
    """An input node or volume cannot be used; the message says which and what to do."""


class CaseError(UserError, ValueError):
    """A bad input file of a cohort: one line naming the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(problem, path)
        self.path = str(path)

    def __reduce__(self):
        return type(self), (self.path, self.problem)


class BadVoxels(UserError, ValueError):
    """The voxels cannot be used as they are; the message says how many, where and what to do."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model."""


class OutputError(UserError, ValueError):
    """An output cannot be written where asked: one line naming the file and what to do."""


class FolderInUse(OutputError):
    """Another run writes the output folder (its lock file names it): one line naming the folder,
    that run's process, machine and start, and what to do."""


class CompareError(UserError, ValueError):
    """Two results folders that cannot be compared."""


class ClusterError(UserError):
    """The cluster cannot be used: one line naming the address and what to do."""


class Cancelled(Exception):
    """The user asked to stop; nothing was produced."""
