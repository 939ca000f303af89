"""User-facing errors.

Anything the user can fix (a recipe key, a path, a corrupt file, a parity
failure) raises :class:`EdgedistillError` with a single line that says what is
wrong and where. The CLI prints that line and exits non-zero without a
traceback; programming errors keep their traceback.
"""


class EdgedistillError(Exception):
    """An error the user can act on; its message is one line."""

    exit_code = 2


class RecipeError(EdgedistillError):
    """A recipe or target file is invalid."""


class DataError(EdgedistillError):
    """Input text could not be fetched, verified or parsed."""


class ModelError(EdgedistillError):
    """A teacher, student or exported model is missing, corrupt or unsupported."""


class TrainingError(EdgedistillError):
    """Distillation diverged (NaN/inf) or cannot proceed."""


class GateError(EdgedistillError):
    """An export failed its parity or budget gate; nothing was written."""

    exit_code = 3


class DiskFullError(EdgedistillError):
    """The disk (or quota) filled up while writing; nothing half-written was left behind."""
