"""One error tree for the whole project.

Every error raised for a person to act on derives from `ProvingMarketError`: its message
says what went wrong and what to do. A step a rule refused is a `Refusal`: `code` names
the rule for programs (the registry's reason text, such as "registry: no free slot", or a
frontend's code, such as "not_in_market"), `reason` is the sentence for the person.

    ProvingMarketError
    ├── ClientError (chain/client.py): the node, the registry, a transaction
    │   └── Refused: the registry refused (or would refuse) a transaction   ─┐
    ├── Refusal: any rule's refusal, with its code                          ◄┘ also
    │   └── StoreRefusal (frontends/auction/store.py): a bid the store does not take
    ├── DeploymentError, MarketError, MirrorError, CircuitError, BackendError,
    │   PreferenceError, PersonaError, AuctionError: their module's inputs and state

Each keeps the built-in base it had (ValueError, LookupError, RuntimeError) as a second
base, so code that catches those still does.
"""

from __future__ import annotations


class ProvingMarketError(Exception):
    """Something a person can act on: the message says what, and what to do."""


class Refusal(ProvingMarketError):
    """A rule refused a step: `code` names the rule, `reason` says why to a person."""

    def __init__(self, code: str, reason: str | None = None, message: str | None = None):
        self.code = code
        self.reason = code if reason is None else reason
        super().__init__(self.reason if message is None else message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.reason
