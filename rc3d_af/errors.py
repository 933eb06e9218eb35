"""The one exception type for bad user input (files, fields, arguments).

The CLI prints an ``InputError`` as a one-line message, without a traceback. It subclasses
ValueError so library callers can catch it as one.
"""


class InputError(ValueError):
    """Bad input; the message names the file, field or argument and what was expected."""
