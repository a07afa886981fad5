"""``--arg key=value`` parsing."""

import pytest

from densepac.engine.config import parse_key_values
from densepac.errors import InputError


def test_values_parse_as_json_python_constants_or_strings():
    got = parse_key_values(
        ["a=16", "b=[4, 8]", 'c={"x": 1}', "d=true", "e=True", "f=False", "g=None", "h=relu2_2", "i=1e-3", "j="]
    )
    assert got == {
        "a": 16,
        "b": [4, 8],
        "c": {"x": 1},
        "d": True,
        "e": True,
        "f": False,
        "g": None,
        "h": "relu2_2",
        "i": 1e-3,
        "j": "",
    }
    with pytest.raises(InputError, match="not key=value"):
        parse_key_values(["16"])
