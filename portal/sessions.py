"""Django's database sessions, without the queries that change nothing.

Every face sign-in creates two sessions (the camera page's, and the rotated one at login) in the
portal's busiest minutes, so every statement a sign-in makes is worth a look:

- a new key is inserted straight away: Django first asks whether the random 32-character key exists,
  although ``create()`` inserts with ``must_create`` and draws again on a clash anyway;
- a session saved again with exactly what this store last wrote is not written again (the camera page
  creates its session, then SessionMiddleware saved the same empty data a second time);
- a session is deleted by one DELETE (Django selects the row first, to delete it as a model instance;
  a session has no relations and no delete signals to honour);
- a rotated key (``cycle_key``, called by ``login()``) is inserted once, when the response saves the
  session: Django inserts the old data under the new key at once, then updates that row with the user
  ``login()`` stores right after (a savepoint, an insert and an update, for one row).
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils.crypto import get_random_string


class SessionStore(DatabaseSessionStore):
    _written: tuple[str, bytes] | None = None

    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)

    def save(self, must_create: bool = False) -> None:
        snapshot = self._snapshot()
        if not must_create and snapshot is not None and snapshot == self._written:
            return
        super().save(must_create=must_create)
        self._written = self._snapshot()

    def _snapshot(self) -> tuple[str, bytes] | None:
        # Serialised, so a value changed in place (a list appended to) still counts as a change.
        if self.session_key is None or not hasattr(self, "_session_cache"):
            return None
        return self.session_key, self.serializer().dumps(self._session_cache)

    def cycle_key(self) -> None:
        data = self._session
        old_key = self.session_key
        self._session_key = None  # save() then draws a new key and inserts (create(), retried on a clash)
        self._session_cache = data
        self.modified = True
        if old_key:
            self.delete(old_key)

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key if session_key is not None else self.session_key
        if session_key is not None:
            self.model.objects.filter(session_key=session_key).delete()
        self._written = None
