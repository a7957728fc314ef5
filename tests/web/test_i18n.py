from __future__ import annotations

import polib

from tests.conftest import REPO


def test_the_browser_language_picks_korean(client, db):
    body = client.get("/login/", HTTP_ACCEPT_LANGUAGE="ko-KR,ko;q=0.9").content.decode()
    assert '<html lang="ko">' in body
    assert "얼굴로 로그인" in body and "비밀번호로 로그인" in body


def test_english_is_the_default(client, db):
    body = client.get("/login/").content.decode()
    assert '<html lang="en">' in body and "Sign in with your face" in body


def test_the_header_switch_changes_the_language(client, db):
    response = client.post("/i18n/setlang/", {"language": "ko", "next": "/login/"})
    assert response.status_code == 302
    assert "얼굴로 로그인" in client.get("/login/").content.decode()


def _page_messages(client, language: str) -> dict[str, str]:
    import json
    import re

    body = client.get("/login/face/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    script = re.search(r'<script id="face-login-messages" type="application/json">(.*?)</script>', body).group(1)
    return json.loads(script)  # the sentences handed to the page's JavaScript


def test_the_face_page_messages_are_translated(client, db):
    messages = _page_messages(client, "ko")
    assert messages["not_recognised"].startswith("인식하지 못했습니다")
    assert "카메라" in messages["camera_denied"]


def test_the_face_page_messages_follow_each_request_s_language(db):
    from django.test import Client

    # The sentences are kept per language once built: each page must still get its own language's.
    assert _page_messages(Client(), "en")["camera_denied"].startswith("Camera access was refused")
    assert "카메라" in _page_messages(Client(), "ko")["camera_denied"]
    assert _page_messages(Client(), "en")["camera_denied"].startswith("Camera access was refused")


def test_every_korean_message_is_translated():
    catalogue = polib.pofile(str(REPO / "locale" / "ko" / "LC_MESSAGES" / "django.po"))
    assert catalogue.percent_translated() == 100, [e.msgid for e in catalogue.untranslated_entries()]
    assert not catalogue.fuzzy_entries()


def test_no_korean_message_is_defined_twice():
    # Merged branches each appending their strings: a second definition is silently ignored by polib and
    # refused by GNU msgfmt, and whichever wins may be the stale one.
    catalogue = polib.pofile(str(REPO / "locale" / "ko" / "LC_MESSAGES" / "django.po"))
    keys = [(entry.msgctxt, entry.msgid) for entry in catalogue]
    assert len(keys) == len(set(keys)), sorted({key for key in keys if keys.count(key) > 1})
