"""A command reading the registry's history through a provider with limits: `ape run
requester status` against a proxy that refuses log queries over 2,000 blocks and fails
some calls (provingmarket/devnet/rpc_proxy.py) shows the whole timeline of a task whose
events lie more than 2,000 blocks apart, where one eth_getLogs from the deployment
block is refused."""

from __future__ import annotations

import pytest
from web3 import Web3
from web3.exceptions import Web3RPCError

from provingmarket.devnet.rpc_proxy import RpcProxy
from tests.cli.conftest import ape_run
from tests.factories import assign


@pytest.mark.ape_run
def test_status__history_wider_than_the_providers_range__whole_timeline(
    recorded, registry, create_task, keeper, prover, chain, deployments_folder
):
    terms = create_task()
    chain.provider.make_request("anvil_mine", [hex(2_100)])
    assign(registry, keeper, terms, prover)
    task = "0x" + bytes(registry.task_id(terms.as_tuple())).hex()

    with RpcProxy(chain.provider.uri, style="quicknode", failure_rate=0.3, seed=4) as proxy:
        one_query = {"address": registry.address, "fromBlock": 0, "toBlock": "latest"}
        with pytest.raises(Web3RPCError, match="limited to a 2,000 range"):
            Web3(Web3.HTTPProvider(proxy.uri)).eth.get_logs(one_query)  # type: ignore[arg-type]

        result = ape_run("requester", ["status", task, "--json"], proxy.uri, deployments_folder, 300)

        assert result.code == 0, result.err
        timeline = result.json()["timeline"]
        assert [e["event"] for e in timeline] == ["TaskPosted", "TaskAssigned"]
        assert timeline[1]["block"] - timeline[0]["block"] > 2_000
        assert proxy.stats["calls.eth_getLogs"] >= 3  # the query above, then the command's pages
        assert sum(n for k, n in proxy.stats.items() if k.startswith("failed.")) >= 1
