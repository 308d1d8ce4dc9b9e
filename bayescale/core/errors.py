"""The package's public input error."""


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names file, column and row."""
