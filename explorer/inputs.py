"""What a person types into the explorer (task ids and prefixes, prover addresses, market
and page numbers), read in one place: anything malformed or out of range is a `NotFound`
naming it and saying how to search, never an error page; and how a list is paged."""

from __future__ import annotations

import re

from eth_utils.address import is_address, to_checksum_address

PAGE_SIZE = 50  # rows per page of every list
MAX_PAGE = 10**6  # a page number past this is not a page

_HEX_PREFIX = re.compile(r"^(0x)?[0-9a-f]{1,64}$")


class NotFound(Exception):
    """What a page asked for is not there (or is not even well formed); `what` names it
    and `hint` says how to find what was meant."""

    def __init__(self, what: str, hint: str):
        super().__init__(what)
        self.what = what
        self.hint = hint


class Redirect(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """A search found exactly one task: go to its page."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


# ------------------------------------------------------------------ input


def task_key(text: str) -> str:
    """A task id or hex prefix as the mirror stores ids (lowercase 0x-hex), or NotFound."""
    key = text.strip().lower()
    if not _HEX_PREFIX.match(key):
        raise NotFound(
            f"“{text[:80]}” is not a task id",
            "a task id is 0x followed by 64 hex digits; search with its first digits (at least 4)",
        )
    return "0x" + key.removeprefix("0x")


def prover_key(text: str) -> str:
    if not is_address(text.strip()) and not is_address(text.strip().lower()):
        raise NotFound(
            f"“{text[:80]}” is not an address",
            "a prover is named by its address: 0x followed by 40 hex digits; the prover list has them all",
        )
    return to_checksum_address(text.strip().lower())


def market_number(text: str) -> int:
    """A market's number as typed, or NotFound (the mirror stores numbers below 2**63)."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number < 2**63:
        raise NotFound(
            f"“{text[:40]}” is not a market number", "markets are numbered 1, 2, …; the overview lists them"
        )
    return number


def page_number(text: str | int | None) -> int:
    if text is None or text == "":
        return 1
    try:
        page = int(text)
    except (TypeError, ValueError):
        page = 0
    if not 1 <= page <= MAX_PAGE:
        raise NotFound(f"there is no page “{str(text)[:40]}”", "pages are numbered from 1")
    return page


def pages(total: int, page: int, what: str) -> dict:
    """The paging of a list of `total` rows at `page` (NotFound past the last page)."""
    last = max(1, -(-total // PAGE_SIZE))
    if page > last:
        raise NotFound(f"there is no page {page} of {what}", f"there {'is' if last == 1 else 'are'} {last}")
    return {"page": page, "pages": last, "total": total, "size": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}


__all__ = [
    "MAX_PAGE",
    "PAGE_SIZE",
    "NotFound",
    "Redirect",
    "market_number",
    "page_number",
    "pages",
    "prover_key",
    "task_key",
]
