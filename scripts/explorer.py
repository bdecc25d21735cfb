"""The explorer's web pages for the registry on a network, over a keeper's mirror.

    ape run explorer --network ethereum:local:node                  # the newest keeper mirror here
    ape run explorer --network ethereum:local:node --data-dir DIR   # a keeper's data directory
    ape run explorer --network ethereum:sepolia:node --mirror FILE --port 8080

It reads the mirror a keeper (orderbook, auction or election frontend) keeps in its data
directory, through a read-only connection, and never sends a transaction; the network is
read for the chain's head only, and the deployment record for each market's circuit (its
public signals by name). Without --mirror or --data-dir it takes the most recently written
keeper mirror of this chain in the default data directories
($XDG_DATA_HOME/provingmarket/chain-<id>/<keeper>-<account>/); without --sim-report, the
newest simulation report under ./reports (what `make sim` writes) is shown. `python -m explorer` is the
same server without ape (for a service: deploy/README.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from explorer.__main__ import bind, chain_head, keeper_mirrors, mirror_path, serve, server_options
from explorer.data import Explorer
from explorer.routing import default_sim_report
from provingmarket.cli import client, command, fail


@command(click, server_options, as_json=False)
def cli(mirror, data_dir, host, port, router_state, sim_report, summary):
    """Serve the explorer's pages for this network's registry (read-only)."""
    registry = client()
    chain_id = registry.web3.eth.chain_id
    if not mirror and not data_dir:
        found = keeper_mirrors(chain_id)
        if not found:
            fail(
                f"no keeper mirror of chain {chain_id} in the default data directories: give a keeper's "
                "--data-dir (or its --mirror FILE), or start a keeper (python -m frontends.orderbook ...)"
            )
        mirror = str(found[0])
        click.echo(f"reading {mirror} (the newest keeper mirror of chain {chain_id})", err=True)
    sock = bind(host, port)
    explorer = Explorer(
        mirror_path(mirror, data_dir),
        registry.deployment,
        chain_head(registry.web3),
        router_states=[Path(p) for p in router_state],
        sim_report=Path(sim_report) if sim_report else default_sim_report(Path.cwd()),
        summary_file=Path(summary) if summary else None,
    )
    serve(explorer, sock, host)
