"""The two ways loading a data set can fail, as exception classes.

Both inherit from a built-in exception so that ``except FileNotFoundError`` or
``except ValueError`` in user code keeps working.
"""


class DatasetNotFoundError(FileNotFoundError):
    """The files are not on disk and could not be downloaded.

    The message lists every expected file, its sha256 and where to put it.
    """


class DatasetFormatError(ValueError):
    """A data file exists but is corrupt or is not the expected file.

    The message always starts with the path of the offending file.
    """
