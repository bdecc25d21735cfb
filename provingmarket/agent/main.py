"""The prover agent's entry point (`proving-market-agent`, `python -m provingmarket.agent`).

Placeholder on the package branch: the agent's own branch replaces this module on merge."""

from provingmarket.agent.agent import main

__all__ = ["main"]
