"""Package names as makepkg 6's lint and pacman take them: capitals included."""

from __future__ import annotations

import pytest

from reposeal.alpm.names import check_name, name_field, split_entry_dir
from reposeal.errors import InvalidNameError


@pytest.mark.parametrize("name", ["hunspell-en_AU", "packageA1", "Foo", "a@b+c_d.e-f", "0ad"])
def test_names_pacman_takes(name: str) -> None:
    assert check_name(name) == name
    assert split_entry_dir(f"{name}-1.0-1") == (name, "1.0-1")


@pytest.mark.parametrize("name", ["-foo", ".foo", "foo bar", "föö", "foo/bar", "", "a" * 256])
def test_names_makepkg_refuses(name: str) -> None:
    with pytest.raises(InvalidNameError):
        check_name(name)


@pytest.mark.parametrize("value", [None, 1, ["core"], {"x": 1}])
def test_names_from_json_are_strings(value: object) -> None:
    with pytest.raises(InvalidNameError):
        name_field(value)  # never "None"
