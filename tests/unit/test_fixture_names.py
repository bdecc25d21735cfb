"""No test module or folder conftest defines a fixture under the name of one that
tests/conftest.py or ape's plugin provides for the session's chain. ape's isolation knows
fixtures by name: a module's own `market` fixture (a filled mirror, nothing on chain) made
it take the session's `market` for re-created and rewind the chain under the tests that
came after it in the same worker, which then failed with "prover not in market"."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# ape's own fixtures (ape.pytest.fixtures) that hold chain state
APE_FIXTURES = {"accounts", "chain", "networks", "project", "compilers"}


def fixtures_in(path: Path) -> set[str]:
    """The names of the functions decorated as pytest fixtures in a file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(target) in ("pytest.fixture", "fixture"):
                    names.add(node.name)
    return names


def test_no_fixture_shadows_a_session_chain_fixture():
    session = fixtures_in(TESTS / "conftest.py") | APE_FIXTURES
    shadowing = {
        f"{path.relative_to(TESTS)}: {name}"
        for path in TESTS.rglob("*.py")
        if path != TESTS / "conftest.py"
        for name in fixtures_in(path) & session
    }
    assert not shadowing, f"rename these (ape's isolation keys fixtures by name): {sorted(shadowing)}"
