"""Reasons are the contract's error API. The registry names them in
contracts/registry/reasons.vy, each constant being its text's bytes as a number: every
constant must decode to the text in its comment (on chain too), every one must be raised
somewhere, and every reason a contract can give must be triggered by a test, since one
nobody triggers is one nobody has seen work."""

import re

from provingmarket import rules
from tests.factories import CONTRACTS, TESTS, named_reasons

REASONS = CONTRACTS / "registry" / "reasons.vy"
LITERAL = re.compile(r'"((?:registry|verifier): [^"<]+)"')


def test_reason_constants__each_decodes_to_the_text_in_its_comment():
    reasons = named_reasons()

    assert len(reasons) > 80, "the constant pattern no longer matches reasons.vy"
    for name, (value, text) in reasons.items():
        assert len(text.encode()) <= 32, name
        assert value.to_bytes(32, "big").lstrip(b"\0") == text.encode(), name
    assert len({value for value, _ in reasons.values()}) == len(reasons), "two names share a reason"


def test_every_reason_constant__is_raised_by_a_module():
    sources = "\n".join(p.read_text() for p in CONTRACTS.rglob("*.vy") if p != REASONS)
    unused = sorted(name for name in named_reasons() if f"reasons.{name}" not in sources)
    assert not unused, f"reasons no contract gives: {unused}"


def test_every_reason_in_the_contracts__appears_in_a_test():
    reasons = {f"registry: {text}" for _, text in named_reasons().values()}
    reasons |= {r for path in CONTRACTS.rglob("*.vy") for r in LITERAL.findall(path.read_text())}
    tests = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != "test_reasons.py")
    untested = sorted(r for r in reasons if f'"{r}"' not in tests)
    assert not untested, f"reasons no test triggers: {untested}"


def test_rules_reasons__each_is_the_registrys_text_of_the_same_name():
    """provingmarket/rules.py answers with the registry's reasons: each of its reason
    constants is the text reasons.vy gives the constant of that name."""
    texts = {name: text for name, (_, text) in named_reasons().items()}
    ours = {
        name: value
        for name, value in vars(rules).items()
        if name.isupper() and isinstance(value, str) and value not in rules.ENGAGEMENT_REASONS
    }
    assert len(ours) >= 26
    assert {name: texts.get(name) for name in ours} == ours
