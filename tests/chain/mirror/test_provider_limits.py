"""The mirror on a provider with limits: a registry's history wider than 2,000 blocks,
synced through a proxy that refuses wider log queries and fails some calls
(provingmarket/devnet/rpc_proxy.py), gives the same mirror as a sync straight from the
node."""

from __future__ import annotations

from web3 import Web3

from provingmarket.chain.client import RegistryClient
from provingmarket.chain.logs import LogReader
from provingmarket.chain.mirror import Mirror
from provingmarket.devnet.rpc_proxy import RpcProxy
from tests.factories import assign, prove


def test_sync__through_a_provider_with_limits__same_mirror_as_straight_from_the_node(
    chain, registry, create_task, keeper, provers
):
    web3 = chain.provider.web3
    early = create_task()
    prove(registry, early, assign(registry, keeper, early, provers[0]), provers[0])
    chain.provider.make_request("anvil_mine", [hex(2_100)])
    late = create_task()
    assign(registry, keeper, late, provers[1])

    with RpcProxy(chain.provider.uri, style="alchemy", failure_rate=0.5, seed=1) as proxy:
        limited = RegistryClient(Web3(Web3.HTTPProvider(proxy.uri)), registry.address)
        limited.logs = LogReader(limited.web3, backoff=0)
        direct = RegistryClient(web3, registry.address)
        # One range of the mirror spans the whole history: the reader pages it.
        with (
            Mirror(":memory:", limited, start_block=0, batch_blocks=10_000) as through,
            Mirror(":memory:", direct, start_block=0, batch_blocks=10_000) as straight,
        ):
            report = through.sync()
            straight.sync()

            assert report.to_block == web3.eth.block_number and report.batches == 1
            assert through.dump() == straight.dump()
            assert [(e.block, e.log_index) for e in through.timeline()] == [
                (e.block, e.log_index) for e in straight.timeline()
            ]
            assert len(through.tasks()) == len(straight.tasks()) >= 2
            assert proxy.stats["refused.range"] >= 1
            assert sum(n for k, n in proxy.stats.items() if k.startswith("failed.")) >= 1
