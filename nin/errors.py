"""Errors a user can fix. The CLI prints them as one line on stderr and exits with code 2."""


class InputError(ValueError):
    """Bad input (grid file, data directory, device, flags): the message says what is wrong and how to fix it."""
