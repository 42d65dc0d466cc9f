"""Link settings and misuse refused with a clear error before anything is sent."""

from __future__ import annotations

import pytest

from sitelink import LinkConfig, LinkError, SiteLink, sqlite, store

from .conftest import delta_body, pick_body


def test_from_dict_takes_a_toml_table_and_refuses_unknown_keys(tmp_path):
    cfg = LinkConfig.from_dict(
        {"role": "site", "site_id": "s1", "port": 8883, "tls_ca": "/x/ca.crt"}, db_path="a.db"
    )
    assert (cfg.port, cfg.tls_ca, cfg.db_path, cfg.window) == (8883, "/x/ca.crt", "a.db", 5000)
    with pytest.raises(LinkError, match="unknown link setting.*hots"):
        LinkConfig.from_dict({"role": "site", "hots": "x", "db_path": "a.db"})


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"role": "edge"}, "role must be"),
        ({"role": "site"}, "needs site_id"),
        ({"role": "site", "site_id": "a/b"}, "may not contain"),
        ({"role": "site", "site_id": "cloud"}, "the cloud's name"),
    ],
)
def test_bad_settings(tmp_path, kwargs, reason):
    with pytest.raises(LinkError, match=reason):
        SiteLink(LinkConfig(db_path=str(tmp_path / "a.db"), **kwargs))


def test_misuse_of_send_and_on(tmp_path):
    db = str(tmp_path / "a.db")
    conn = sqlite.connect(db)
    store.ensure_schema(conn)
    site = SiteLink(LinkConfig(role="site", site_id="site-1", db_path=db, port=1))
    with pytest.raises(LinkError, match="cannot send as site"):
        site.send(conn, "stock_delta", delta_body(1), site="site-2")
    with pytest.raises(LinkError, match="never receives"):
        site.on("stock_delta", lambda c, e: None)
    with pytest.raises(LinkError, match="unknown message type"):
        site.on("teleport", lambda c, e: None)
    cloud = SiteLink(LinkConfig(role="cloud", db_path=db, port=1))
    with pytest.raises(LinkError, match="which site"):
        cloud.send(conn, "pick_task", pick_body(1))
    assert conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 0
    site.start()  # no broker on port 1: it keeps trying in the background
    try:
        with pytest.raises(LinkError, match="before start"):
            site.on("pick_task", lambda c, e: None)
        assert site.send(conn, "stock_delta", delta_body(1)).seq == 1  # the outbox buffers meanwhile
        assert site.status()["connected"] is False and site.status()["outbox_total"] == 1
    finally:
        site.stop()
