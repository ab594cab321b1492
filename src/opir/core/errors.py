"""The project's own error types: every expected failure reaches the user as one of these, with the file, key or
row it concerns and what was expected."""


class OpirError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(OpirError):
    """A config file or sheet does not match its schema or is inconsistent."""


class DataError(OpirError):
    """Input data (an OPUS file, a potentiostat log, a table) is unusable."""


class OpusReadError(DataError):
    """An OPUS file cannot be read, or lacks the block that was asked for."""
