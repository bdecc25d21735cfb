"""The registry's sources read as text: every module with external functions takes the reentrancy lock."""

import re

from tests.factories import CONTRACTS


def test_every_module_with_external_functions__is_under_the_reentrancy_lock():
    for path in sorted((CONTRACTS / "registry").glob("*.vy")) + [CONTRACTS / "Registry.vy"]:
        source = path.read_text()
        assert source.startswith("# pragma version 0.4.3\n"), path.name
        if "@external" in source:
            assert "# pragma nonreentrancy on" in source, f"{path.name} has external functions and no lock"
        assert re.search(r'"""\n@title .+\n@notice', source), f"{path.name} lacks a @title and @notice"
