"""Errors raised by serve/ (all subclass ValueError so callers can act on them)."""


class ServeError(ValueError):
    """Base class of serve/ errors."""


class ModelDirError(ServeError):
    """A MODEL_DIR is missing ``serve.json`` or has an unknown kind/format."""


class InputSpecError(ServeError):
    """An image does not match the model's input spec (channels, size)."""


class RenameError(ServeError):
    """A rename would overwrite a file or leave the input folder."""
