"""The registry's view of its reasons on chain: every named constant decodes to its text."""

from tests.factories import named_reasons


def test_reason_text__the_registry_decodes_every_constant(registry):
    for value, text in named_reasons().values():
        assert registry.reason_text(value) == f"registry: {text}"
