"""Every reason the registry can give is exercised by a test: reasons are the contract's
error API, so one nobody triggers is one nobody has seen work."""

import re

from tests.conftest import TESTS

CONTRACTS = TESTS.parent / "contracts"
REASON = re.compile(r'"((?:registry|verifier): [^"]+)"')


def test_every_reason_in_the_contracts__appears_in_a_test():
    reasons = {r for path in CONTRACTS.rglob("*.vy") for r in REASON.findall(path.read_text())}
    tests = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != "test_reasons.py")
    assert len(reasons) > 50, "the reason pattern no longer matches the contracts"
    untested = sorted(r for r in reasons if f'"{r}"' not in tests)
    assert not untested, f"reasons no test triggers: {untested}"
