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

import contextlib
import json
import logging
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import click
import uvicorn
from web3 import Web3

from explorer import routing
from explorer.app import create_app
from explorer.data import Explorer
from provingmarket.chain import index
from provingmarket.chain.client import ClientError, RegistryClient, reported
from provingmarket.chain.database import is_url
from provingmarket.chain.index import IndexReading
from provingmarket.deployments import Deployment, DeploymentError
from provingmarket.runtime.config import as_service, config_option
from provingmarket.runtime.datadir import default_data_dir
from provingmarket.runtime.metrics import listen
from provingmarket.runtime.process import RPC_ERRORS, configure_logging, emit

log = logging.getLogger("explorer")
HEAD_TTL = 1.0  # seconds the chain's head is remembered between pages


def chain_head(node: str | Web3) -> Callable[[], tuple[int, int] | None]:
    """The latest (block number, timestamp) of `node` (a URL or a Web3), asked at most once
    a `HEAD_TTL`; None while the node does not answer (the pages then show the mirror alone)."""
    web3 = Web3(Web3.HTTPProvider(node, request_kwargs={"timeout": 2})) if isinstance(node, str) else node
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


def market_index(node: str | Web3) -> Callable[[str, int], IndexReading | None]:
    """A market's price and latency index as the registry at an address holds it now
    (`market_index`), read from `node`; None while the node does not answer."""
    web3 = Web3(Web3.HTTPProvider(node, request_kwargs={"timeout": 2})) if isinstance(node, str) else node
    clients: dict[str, RegistryClient] = {}

    def read(registry: str, market_id: int) -> IndexReading | None:
        try:
            client = clients.get(registry) or clients.setdefault(registry, RegistryClient(web3, registry))
            return index.read(client, market_id)
        except RPC_ERRORS:
            return None

    return read


def keeper_mirrors(chain_id: int) -> list[Path]:
    """The mirrors of the keepers on this machine for `chain_id` in their default data
    directories (provingmarket/runtime/datadir.py), the most recently written first."""
    root = default_data_dir("x", chain_id, "x").parent
    found = [p for p in root.glob("*/mirror.sqlite") if not p.parent.name.startswith("agent-")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def mirror_path(mirror: str | None, data_dir: str | None) -> str:
    if mirror and data_dir:
        raise click.UsageError("give --mirror FILE or --data-dir DIR, not both")
    if not mirror and not data_dir:
        raise click.UsageError("name the mirror to read: --mirror FILE or --data-dir DIR (a keeper's)")
    if mirror and is_url(mirror):  # the shared mirror an indexer writes into Postgres
        return mirror
    path = Path(mirror) if mirror else Path(data_dir or "") / "mirror.sqlite"
    if not path.exists():  # a keeper starting beside it: the pages say so until it is written
        emit(
            log,
            "explorer.no_mirror",
            logging.WARNING,
            path=str(path),
            reason="no mirror there yet: the pages say so until a keeper writes it",
        )
    return str(path)


def serve(explorer: Explorer, sock: socket.socket, host: str) -> None:
    """Serve the explorer on `sock` until SIGTERM or Ctrl-C; its URL is printed first, as
    one JSON line on stdout."""
    app = create_app(explorer, extra_pages=_extra_pages())
    server = _Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=2, lifespan="off")
    )
    app.state.stopping = lambda: server.should_exit
    threading.Thread(target=refresh, args=(explorer, app.state.stopping), name="refresh", daemon=True).start()
    url = f"http://{host}:{sock.getsockname()[1]}/"
    print(json.dumps({"event": "explorer.listening", "url": url, "mirror": explorer.where}), flush=True)
    emit(log, "explorer.start", url=url, mirror=explorer.where)
    server.run(sockets=[sock])  # returns on SIGTERM / SIGINT (uvicorn's handlers)
    emit(log, "explorer.stop", url=url)


class _Server(uvicorn.Server):
    """uvicorn, stopping on SIGTERM / SIGINT with exit code 0: uvicorn's own handlers raise
    the signal again once it has shut down, so the process would end killed by it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        def stop(signum: int, frame: object) -> None:
            if self.should_exit and signum == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        original = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """The explorer's socket, bound before anything is read (a port in use: one line)."""
    try:
        sock = listen(port, host, "--port", "the explorer")
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    sock.listen(1024)  # connections wait from now on: the URL is printed before uvicorn starts
    return sock


def server_options(command: Callable) -> Callable:
    """What `python -m explorer` and `ape run explorer` share: the mirror and the server."""
    for option in reversed(
        [
            click.option(
                "--mirror",
                help="A keeper's mirror file (mirror.sqlite), or the postgresql:// URL of the "
                "shared mirror an indexer writes.",
            ),
            click.option(
                "--data-dir",
                type=click.Path(file_okay=False),
                help="A keeper's data directory: its mirror.sqlite is read (instead of --mirror).",
            ),
            click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on."),
            click.option(
                "--port",
                default=8080,
                show_default=True,
                type=click.IntRange(0, 65535),
                help="0 picks a free port.",
            ),
            click.option(
                "--router-state",
                multiple=True,
                type=click.Path(dir_okay=False),
                help="A router's state file (repeat).",
            ),
            click.option(
                "--sim-report", type=click.Path(file_okay=False), help="A simulation report's folder."
            ),
            click.option(
                "--summary",
                type=click.Path(dir_okay=False),
                help="A JSON note for the front page (the demo's).",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command()
@config_option
@server_options
@click.option(
    "--rpc", help="A node's URL, read for the chain's head and the markets' price index only (optional)."
)
@click.option(
    "--deployment", type=click.Path(dir_okay=False), help="The deployment record (names the circuits)."
)
@click.option("--log-level", default="INFO", show_default=True)
def main(mirror, data_dir, host, port, router_state, sim_report, summary, rpc, deployment, log_level):
    """Serve the explorer's pages over a keeper's mirror (read-only)."""
    configure_logging(log_level)
    sock = bind(host, port)
    path = mirror_path(mirror, data_dir)
    record = None
    if deployment:
        if not Path(deployment).exists():
            raise click.ClickException(f"no deployment record at {deployment} (--deployment)")
        try:
            record = Deployment.from_json(Path(deployment).read_text(), deployment)
        except DeploymentError as error:
            raise click.ClickException(str(error)) from None
    explorer = Explorer(
        path,
        record,
        chain_head(rpc) if rpc else None,
        router_states=[Path(p) for p in router_state],
        sim_report=Path(sim_report) if sim_report else None,
        summary_file=Path(summary) if summary else None,
        index=market_index(rpc) if rpc else None,
    )
    serve(explorer, sock, host)


def _extra_pages() -> dict:
    """The pages built beside the core ones: the mechanisms and routing page."""
    return {"/mechanisms": routing.page}


def refresh(explorer: Explorer, stopping: Callable[[], bool], poll: float = 0.5) -> None:
    """Recompute the whole-history figures (the overview's, the mechanisms page's) each
    time the mirror's cursor moves, so that no visitor waits for them: they are cached per
    cursor (explorer/data.py). Runs until `stopping()`; a mirror not there yet is waited for."""
    shown = None
    while not stopping():
        cursor = None
        try:
            cursor = explorer.cursor()
            if cursor != shown:
                explorer.overview()
                routing.warm(explorer)
                shown = explorer.warmed = cursor
        except (OSError, sqlite3.Error):  # not written yet, or busy for a moment
            pass
        except Exception as error:  # a page's figures failed: the pages say so; keep going
            emit(log, "explorer.refresh_failed", logging.WARNING, cursor=shown, reason=repr(error)[:300])
            shown = cursor
        time.sleep(poll)


as_service(main, "PROVINGMARKET_EXPLORER")


if __name__ == "__main__":
    sys.exit(main())
