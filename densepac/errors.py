"""Exception types shared by the library and the CLI.

One policy: every mistake a user can make (a file, an array, an argument, a model name)
raises :class:`InputError` (or its :class:`InputTypeError` for a wrong type), with one
sentence naming the input and the fix; the CLI prints it and exits with code 2. Other
exceptions are failures of the run (exit code 1).
"""


class DensepacError(Exception):
    """Base class for errors raised by densepac."""


class InputError(DensepacError, ValueError):
    """A user-supplied file, array or argument is unusable.

    The message is one sentence that names the input and says how to fix it; the CLI
    prints it as is and exits with code 2.
    """


class InputTypeError(InputError, TypeError):
    """A user-supplied argument has the wrong type (also a TypeError, as Python's own checks raise)."""


class WeightsError(InputError):
    """A weights file is missing, corrupt, unsafe or made for another architecture."""
