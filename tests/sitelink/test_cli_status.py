"""`marketsync link status` never prints a missing value as "None"."""

from sitelink.cli import render_status


def test_a_peer_without_a_state_reads_as_words_not_none():
    st = {"outbox_total": 0, "outbox": {"site-1": {"depth": 0, "oldest_at": None}}, "inbox_applied": 0,
          "inbound": {}, "peers": {"site-1": {"state": None, "state_at": None, "last_seen": None}}, "gaps": [],
          "dead_letters": 0, "recent_dead_letters": []}
    text = render_status(st)
    assert "None" not in text and "has not reported its state yet" in text and "last heard never" in text
    assert "none has been heard from yet" in render_status({**st, "peers": {}})


def test_every_state_of_the_other_side_reads_as_words_in_both_languages():
    """online, offline, a state this version does not know, no state at all, no time: never "None"."""
    from cloud_sync.cli.link import Words
    from cloud_sync.cli.link import render_status as in_words

    peers = {"a": {"state": "online", "state_at": "2026-12-01T10:00:00Z", "last_seen": "2026-12-01T10:05:00Z"},
             "b": {"state": "offline", "state_at": "2026-12-01T10:00:00Z", "last_seen": None},
             "c": {"state": "rebooting", "state_at": None, "last_seen": None},
             "d": {"state": None, "state_at": None, "last_seen": None}}
    st = {"outbox_total": 21, "outbox": {"a": {"depth": 21, "oldest_at": None}}, "inbox_applied": 1,
          "inbound": {"a": {"applied": 1, "next_seq": 2, "last_message_at": None}}, "peers": peers,
          "gaps": [{"peer": "a", "from_seq": 3, "to_seq": 5, "detected_at": "2026-12-01T10:00:00Z"}],
          "dead_letters": 5, "recent_dead_letters": []}
    ru = in_words(st, Words("ru", "Europe/Moscow"))
    assert "None" not in ru and "к отправке: 21 сообщение ждёт подтверждения" in ru
    assert "a: на связи с 01.12.2026, 13:00, последний раз на связи 01.12.2026, 13:05" in ru
    assert "b: нет связи с 01.12.2026, 13:00, ещё ни разу не выходил на связь" in ru
    assert "c: rebooting, ещё ни разу" in ru and "d: о своём состоянии ещё не сообщал" in ru
    assert "входящие: 1 сообщение получено и применено" in ru and "1 пропуск:" in ru
    assert "5 сообщений не удалось применить" in ru
    en = in_words(st, Words("en", "UTC")).replace("\u202f", " ")  # CLDR puts a narrow space before AM
    assert "None" not in en and "a: online since 12/1/26, 10:00 AM" in en and "d: has not reported" in en
