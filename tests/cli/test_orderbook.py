"""`ape run orderbook`: the frontend started through ape refuses what it cannot serve,
in one line, before it starts following the chain."""

from __future__ import annotations


def test_orderbook__built_in_mechanism_or_no_account__one_line_error_exit_1(run, recorded, tmp_path):
    data = str(tmp_path / "ob")
    built_in = run("orderbook", "--mechanism", "1", "--data-dir", data, account="TEST::5")
    assert built_in.code == 1
    assert built_in.error == (
        "error: give the id of a registered mechanism; the open race and the Dutch auction need no frontend"
    )
    anonymous = run("orderbook", "--mechanism", "3", "--data-dir", data)
    assert anonymous.code == 1
    assert "pass --account" in anonymous.error
