"""Errors that mean "the user asked for something we cannot do": reported in one line, no traceback."""


class UserError(Exception):
    """Bad input: an unknown name, an invalid value, missing data. The message is one line
    that names the key, the value and the valid choices (or where we looked)."""


class DataNotFoundError(UserError):
    """A dataset is not where the config says; the message says where we looked and how to get it."""
