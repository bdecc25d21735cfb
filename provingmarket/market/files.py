"""The files a requester's client keeps beside the deployment record, one per chain: the
router's state (`router-<chain id>.json`) and the re-pricing record
(`repricing-<chain id>.json`), or wherever their option says."""

from __future__ import annotations

from pathlib import Path

from provingmarket.chain.client import ClientError, RegistryClient


def per_chain_file(
    registry: RegistryClient, given: str | None, folder: Path, stem: str, option: str, create: bool = True
) -> Path:
    """`given` (the value of `option`), else `<stem>-<chain id>.json` in FOLDER; its folder
    made when `create`. ClientError (one line naming `option`) for a folder that cannot be
    made, or a path that is a folder."""
    path = Path(given) if given else folder / f"{stem}-{registry.web3.eth.chain_id}.json"
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ClientError(
                f"{option} {path}: cannot make its folder ({error.strerror or error})"
            ) from None
    if path.is_dir():
        raise ClientError(f"{option} {path} is a folder; give a file")
    return path
