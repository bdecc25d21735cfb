"""What the agent's services share (`Context`): the registry client signing as the
prover, the mirror, the outbox and the agent's rows (one SQLite file), its metrics,
settings and stop signal; `Service` gives each of them to a service as attributes."""

from __future__ import annotations

from dataclasses import dataclass

from provingmarket.agent.settings import AgentSettings
from provingmarket.agent.store import AgentStore
from provingmarket.chain.client import RegistryClient
from provingmarket.chain.mirror import Mirror
from provingmarket.chain.outbox import Outbox
from provingmarket.runtime import process as runtime
from provingmarket.runtime.metrics import Metrics

NEEDS_KEY = "the agent needs the prover's key"


@dataclass(frozen=True)
class Context:
    client: RegistryClient  # with the prover's signer
    mirror: Mirror  # read and written by the main loop only
    outbox: Outbox  # thread-safe
    store: AgentStore  # one connection, under its lock
    metrics: Metrics
    settings: AgentSettings
    stop: runtime.Stopper


class Service:
    """One part of the agent (monitor, picker, workers, submitter), on the shared context."""

    def __init__(self, context: Context):
        self.context = context
        self.client = context.client
        self.web3 = context.client.web3
        self.signer = context.client.require_signer(NEEDS_KEY)
        self.me = self.signer.address
        self.mirror = context.mirror
        self.outbox = context.outbox
        self.store = context.store
        self.metrics = context.metrics
        self.settings = context.settings
        self.stop = context.stop
