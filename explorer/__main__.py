"""`python -m explorer`: serve the explorer over a keeper's mirror until SIGTERM.

    python -m explorer --mirror ~/.local/share/provingmarket/chain-1337/orderbook-0x…/mirror.sqlite \
        --rpc http://127.0.0.1:8545 --deployment deployments/ethereum-local.json --port 8080

It reads the mirror a keeper keeps (`--mirror FILE`, or `--data-dir DIR` of the keeper)
through a read-only connection and never writes to the chain; `--rpc` only reads the
chain's head (to show how far behind the mirror is) and `--deployment` names each market's
circuit (public signals by name). On start it prints one JSON line with its URL:
{"event": "explorer.listening", "url": "http://127.0.0.1:8080/"}.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import uvicorn

from explorer.app import create_app
from explorer.data import Explorer
from provingmarket.chain.client import reported
from provingmarket.deployments import Deployment, DeploymentError
from provingmarket.runtime.config import as_service, config_option
from provingmarket.runtime.metrics import PortInUse, listen
from provingmarket.runtime.process import RPC_ERRORS, configure_logging, emit

log = logging.getLogger("explorer")
HEAD_TTL = 1.0  # seconds the chain's head is remembered between pages


def chain_head(rpc: str) -> Callable[[], tuple[int, int] | None]:
    """The node's latest (block number, timestamp), asked at most once a `HEAD_TTL`; None
    while the node does not answer (the pages then show the mirror alone)."""
    from web3 import Web3

    web3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 2}))
    lock = threading.Lock()
    last: list = [0.0, None]

    def head() -> tuple[int, int] | None:
        with lock:
            if time.monotonic() - last[0] < HEAD_TTL:
                return last[1]
            try:
                block = web3.eth.get_block("latest")
                last[1] = (int(reported(block, "number")), int(reported(block, "timestamp")))
            except RPC_ERRORS:
                last[1] = None
            last[0] = time.monotonic()
            return last[1]

    return head


def build_explorer(
    mirror: str,
    rpc: str | None = None,
    deployment: str | None = None,
    router_state: tuple[str, ...] = (),
    sim_report: str | None = None,
    summary: str | None = None,
) -> Explorer:
    record = None
    if deployment:
        path = Path(deployment)
        if not path.exists():
            raise click.ClickException(f"no deployment record at {path} (--deployment)")
        try:
            record = Deployment.from_json(path.read_text(), str(path))
        except DeploymentError as error:
            raise click.ClickException(str(error)) from None
    return Explorer(
        mirror,
        record,
        chain_head(rpc) if rpc else None,
        router_states=[Path(p) for p in router_state],
        sim_report=Path(sim_report) if sim_report else None,
        summary_file=Path(summary) if summary else None,
    )


@click.command()
@config_option
@click.option("--mirror", type=click.Path(dir_okay=False), help="The keeper's mirror file (mirror.sqlite).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="A keeper's data directory: its mirror.sqlite is read (instead of --mirror).",
)
@click.option("--rpc", help="A node's URL, read for the chain's head only (optional).")
@click.option(
    "--deployment", type=click.Path(dir_okay=False), help="The deployment record (names the circuits)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option(
    "--router-state", multiple=True, type=click.Path(dir_okay=False), help="A router's state file (repeat)."
)
@click.option("--sim-report", type=click.Path(file_okay=False), help="A simulation report's folder.")
@click.option(
    "--summary", type=click.Path(dir_okay=False), help="A JSON summary shown on the front page (the demo's)."
)
@click.option("--log-level", default="INFO", show_default=True)
def main(mirror, data_dir, rpc, deployment, host, port, router_state, sim_report, summary, log_level):
    """Serve the explorer's pages over a keeper's mirror (read-only)."""
    configure_logging(log_level)
    if not mirror and not data_dir:
        raise click.UsageError("name the mirror to read: --mirror FILE or --data-dir DIR (a keeper's)")
    path = mirror or str(Path(data_dir) / "mirror.sqlite")
    try:
        sock = listen(port, host, "--port", "the explorer")
    except PortInUse as error:
        raise click.ClickException(str(error)) from None
    explorer = build_explorer(path, rpc, deployment, router_state, sim_report, summary)
    app = create_app(explorer, extra_pages=_extra_pages())
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=2, lifespan="off")
    )
    url = f"http://{host}:{sock.getsockname()[1]}/"
    print(json.dumps({"event": "explorer.listening", "url": url, "mirror": path}), flush=True)
    emit(log, "explorer.start", url=url, mirror=path, rpc=rpc)
    server.run(sockets=[sock])  # returns on SIGTERM / SIGINT (uvicorn's handlers)
    emit(log, "explorer.stop", url=url)


def _extra_pages() -> dict:
    """The pages built beside the core ones (the mechanisms and routing page, once merged)."""
    return {}


as_service(main, "PROVINGMARKET_EXPLORER")


if __name__ == "__main__":
    sys.exit(main())
