"""The registry's view of its reasons on chain: every named constant decodes to its text."""

from tests.factories import named_reasons


def test_reason_text__the_registry_decodes_every_constant(registry_math, registry):
    for value, text in named_reasons().values():
        assert registry_math.reason_text(value) == f"registry: {text}"
