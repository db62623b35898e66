"""When a registry lock's holder was last seen (the lock itself runs against real
MLflow stores in tests/integration/test_registry_lock.py)."""

from ml_service.registry.lock import _last_beat


def test_the_last_beat_is_the_later_of_acquired_and_heartbeat():
    assert _last_beat({"acquired": "100.5", "heartbeat": "130.25"}) == 130.25
    assert _last_beat({"acquired": "100.5"}) == 100.5


def test_unreadable_stamps_count_as_never_seen():
    assert _last_beat({"acquired": "soon", "heartbeat": ""}) == 0.0
    assert _last_beat({}) == 0.0
