"""The registry's reasons as contracts/registry/reasons.vy names them, and which reasons
a function of the registry's modules can return."""

from __future__ import annotations

import re
from pathlib import Path

MODULES = Path(__file__).parents[2] / "contracts" / "registry"
CONSTANT = re.compile(r'^([A-Z_]+): constant\(uint256\) = (\d+)  # "([^"]+)"$', re.M)


def named_reasons() -> dict[str, tuple[int, str]]:
    """Each reason's name -> (its constant, its text without the "registry: " prefix)."""
    source = (MODULES / "reasons.vy").read_text()
    return {name: (int(value), text) for name, value, text in CONSTANT.findall(source)}


def returned_by(module: str, function: str) -> set[str]:
    """The reasons ("registry: <text>") `function` of a module returns by name."""
    source = (MODULES / f"{module}.vy").read_text()
    body = re.search(rf"\ndef {function}\(.*?(?=\n@|\Z)", source, re.S)
    assert body, f"no function {function} in {module}.vy"
    texts = named_reasons()
    names = set(re.findall(r"return reasons\.([A-Z_]+)", body.group(0))) - {"OK"}
    return {f"registry: {texts[name][1]}" for name in names}
