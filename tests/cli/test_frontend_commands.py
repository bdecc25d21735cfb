"""`ape run auction` and `ape run election`: refusals in one line, and `election verify`
for a task that was never posted or a malformed id."""

from __future__ import annotations


def test_auction__built_in_mechanism__one_line_error_exit_1(run, recorded, tmp_path):
    refused = run(
        "auction", "--mechanism", "2", "--data-dir", str(tmp_path / "a"), "--port", "0", account="TEST::5"
    )
    assert refused.code == 1
    assert refused.error.startswith("error: ") and "need no frontend" in refused.error


def test_election_verify__unknown_or_malformed_task__one_line_error_exit_1(run, recorded):
    unknown = run("election", "verify", "0x" + "11" * 32)
    assert unknown.code == 1 and unknown.error.startswith("error: ")
    assert "0x" + "11" * 32 in unknown.error
    malformed = run("election", "verify", "0x1234")
    assert malformed.code == 1
    assert malformed.error == "error: '0x1234' is not a task id (32 bytes as hex, 0x and 64 digits)"
