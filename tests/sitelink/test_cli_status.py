"""`marketsync link status` never prints a missing value as "None"."""

from sitelink.cli import render_status


def test_a_peer_without_a_state_reads_as_words_not_none():
    st = {"outbox_total": 0, "outbox": {"site-1": {"depth": 0, "oldest_at": None}}, "inbox_applied": 0,
          "inbound": {}, "peers": {"site-1": {"state": None, "state_at": None, "last_seen": None}}, "gaps": [],
          "dead_letters": 0, "recent_dead_letters": []}
    text = render_status(st)
    assert "None" not in text and "has not reported its state yet" in text and "last heard never" in text
    assert "none has been heard from yet" in render_status({**st, "peers": {}})
