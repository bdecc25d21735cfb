"""Solidity through solc from node_modules (provingmarket/proving/solidity.py): a source that
does not compile gives a one-line SolidityError with solc's first error and where it is."""

from __future__ import annotations

import pytest

from provingmarket.proving.solidity import SolidityError, compile_solidity


def test_compile_solidity__syntax_error__one_line_with_solcs_message():
    with pytest.raises(SolidityError) as error:
        compile_solidity({"Broken.sol": "pragma solidity ^0.8.0;\ncontract {\n"})
    message = str(error.value)
    assert message.startswith("solc 0.8.")
    assert "ParserError" in message and "Broken.sol:2" in message
    assert "\n" not in message
