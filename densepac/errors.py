"""Exception types shared by the library and the CLI."""


class DensepacError(Exception):
    """Base class for errors raised by densepac."""


class InputError(DensepacError, ValueError):
    """A user-supplied file, array or argument is unusable.

    The message is one sentence that names the input and says how to fix it; the CLI
    prints it as is and exits with code 2.
    """


class WeightsError(DensepacError, ValueError):
    """A weights file is missing, corrupt, unsafe or made for another architecture."""
