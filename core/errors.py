"""Exceptions that carry a message meant for the user.

The CLI turns these into exit status 2 with one line; the API into a 4xx with the same text.
"""


class SimudyError(Exception):
    """Base class: bad input that the user can fix. ``str(err)`` is the whole message."""


class CheckpointError(SimudyError):
    """A checkpoint file is unreadable, unsafe, or does not fit the architecture."""


class RecipeError(SimudyError):
    """A training recipe or reconstruction setting is invalid."""


class DatasetError(SimudyError):
    """A dataset file (npz with ``x`` uint8 NHWC and ``y``) is malformed."""


class ReconstructionFailed(SimudyError):
    """The optimisation itself failed (non-finite loss, out of memory)."""
