"""portal.sessions: Django's database sessions without the statements that change nothing."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.sessions import SessionStore


def _session_statements(queries) -> list[str]:
    return [q["sql"].split()[0] for q in queries if "django_session" in q["sql"]]


def test_the_camera_page_writes_its_new_session_once(client, db):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/login/face/")
    assert response.status_code == 200 and client.session.session_key
    # Django's store would ask whether the key exists, insert it, then update it with the same data.
    assert _session_statements(queries) == ["INSERT"]


def test_a_session_changed_after_it_was_written_is_written_again(db):
    store = SessionStore()
    store["steps"] = []
    store.save()
    store["steps"].append("camera")  # changed in place: the same list object
    store.save()
    assert SessionStore(store.session_key).load() == {"steps": ["camera"]}
    with CaptureQueriesContext(connection) as queries:
        store.save()  # nothing changed since
    assert _session_statements(queries) == []


def test_rotating_the_key_keeps_the_data_and_drops_the_old_row(db):
    store = SessionStore()
    store["claim"] = "20260001"
    store.save()
    old = store.session_key
    store.cycle_key()
    store.save()
    assert store.session_key != old
    assert not SessionStore().exists(old)
    assert SessionStore(store.session_key).load() == {"claim": "20260001"}


def test_rotating_the_key_at_login_writes_each_row_once(db):
    store = SessionStore()
    store["claim"] = "20260001"
    store.save()
    old = store.session_key
    with CaptureQueriesContext(connection) as queries:
        store.cycle_key()  # what login() does, then it stores the user and the response saves
        store["_auth_user_id"] = "7"
        store.save()
    # Django's store: select the old row, insert the new one with the old data, delete the old one,
    # then update the new one with the user.
    assert _session_statements(queries) == ["DELETE", "INSERT"]
    assert store.session_key not in (None, old)
    assert not SessionStore().exists(old)
    assert SessionStore(store.session_key).load() == {"claim": "20260001", "_auth_user_id": "7"}


def test_signing_out_deletes_the_session(client, db):
    store = SessionStore()
    store["claim"] = "20260001"
    store.save()
    key = store.session_key
    store.delete()
    assert not SessionStore().exists(key)
    store.delete()  # already gone: nothing to do, no error
    SessionStore().delete()  # no key at all
