"""The one exception type the suite raises for bad input.

It subclasses ValueError so library users can catch it as such; the command line catches it and prints its
message (which names what is wrong and how to fix it) instead of a traceback.
"""


class VaebenchError(ValueError):
    """Bad input to vaebench: an unknown name, an impossible setting, missing or corrupt data."""
