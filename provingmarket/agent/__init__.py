"""The prover agent, a package of services: docs/agent.md says what it does and which
module holds what; agent.py wires them together, `python -m provingmarket.agent` runs it."""
