"""The one exception the data package raises for anything the user can fix."""


class DataError(Exception):
    """MNIST could not be fetched, verified or parsed.

    The message always says what went wrong (which file, which source, which hash) and how to fix it.
    """
