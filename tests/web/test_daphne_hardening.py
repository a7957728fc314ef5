"""Issue 16's HTTP attacks against a real daphne (tests/live.py): real PBKDF2 password hashing, real
sockets, daphne's own request parsing. One portal for the module; the models are not loaded."""

from __future__ import annotations

import http.client
import re
import socket
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.live import DaphneProcess, manage, portal_env, wait_until

pytestmark = pytest.mark.slow

PASSWORD = "demo-pass-1234"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    data = tmp_path_factory.mktemp("hardening")
    env = portal_env(
        data,
        FACELOGIN_WARM_UP=False,
        FACELOGIN_DEMO_PASSWORD=PASSWORD,
        FACELOGIN_ADMIN_PASSWORD="admin-pass-1234",
        DJANGO_TRUSTED_PROXIES="127.0.0.1",  # this test plays the proxy from 127.0.0.1
        DJANGO_HTTP_AUTH_THREADS=1,
        DJANGO_HTTP_AUTH_QUEUE=3,
        DJANGO_LOGIN_ACCOUNT_FAILURES=1000,  # the lock-out has its own tests; here every POST hashes
        DJANGO_LOGIN_ADDRESS_FAILURES=1000,
    )
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    manage(env, "seed_demo")
    with DaphneProcess(env) as daphne:
        daphne.database = Path(data) / "portal.sqlite3"
        yield daphne


def _query(portal, sql: str, *args):
    with sqlite3.connect(portal.database, timeout=20) as db:
        return db.execute(sql, args).fetchall()


class Browser:
    """One kept-alive connection with cookies, from a chosen local address (127.0.0.x)."""

    def __init__(self, portal, source: str = "127.0.0.1") -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=60, source_address=(source, 0))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        headers = {"Host": "127.0.0.1", **(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = urllib.parse.urlencode(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = f"http://127.0.0.1{path}"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return response, content

    def sign_in_form(self) -> dict:
        self.request("GET", "/login/")
        return {"csrfmiddlewaretoken": self.cookies["csrftoken"]}


def _raw_post(portal, form: dict, cookies: dict, *, close_at_once: bool = False) -> bytes:
    body = urllib.parse.urlencode(form).encode()
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    head = (
        f"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nReferer: http://127.0.0.1/login/\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", portal.port), timeout=60) as sock:
        sock.sendall(head + body)
        if close_at_once:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_forged_forwarded_for_is_not_believed(portal):
    # From the trusted proxy: the client forged a left-most address, the proxy appended the real one.
    browser = Browser(portal)
    form = browser.sign_in_form()
    forged = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    response, _ = browser.request("POST", "/login/", {**form, "username": "20260001", "password": PASSWORD}, forged)
    assert response.status == 302
    # Straight from a client that is not the proxy (127.0.0.2): its header is ignored altogether.
    direct = Browser(portal, source="127.0.0.2")
    form = direct.sign_in_form()
    response, _ = direct.request("POST", "/login/", {**form, "username": "20260002", "password": PASSWORD}, {"X-Forwarded-For": "6.6.6.6"})
    assert response.status == 302
    ips = dict(_query(portal, "SELECT u.username, s.ip FROM facelogin_signin s JOIN auth_user u ON u.id = s.user_id"))
    assert ips == {"20260001": "203.0.113.7", "20260002": "127.0.0.2"}


def test_a_flood_of_password_posts_does_not_starve_pages_and_the_excess_is_told_to_retry(portal):
    browser = Browser(portal)
    form = {**browser.sign_in_form(), "username": "20260003", "password": "wrong-password"}
    finished: list[str] = []
    answers: list[bytes] = []
    lock = threading.Lock()

    def post(index: int) -> None:
        answer = _raw_post(portal, form, browser.cookies)
        with lock:
            answers.append(answer)
            finished.append(f"post{index}")

    flood = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for thread in flood:
        thread.start()
    wait_until(lambda: len(answers) >= 8 or None, timeout=30, interval=0.01)  # the excess is refused at once
    pages = Browser(portal)
    for path in ("/healthz/", "/static/css/portal.css", "/login/"):
        response, _ = pages.request("GET", path)
        assert response.status == 200, path
        with lock:
            finished.append(path)
    for thread in flood:
        thread.join(60)
    statuses = [int(answer.split(b" ", 2)[1]) for answer in answers]
    assert statuses.count(503) >= 6 and statuses.count(200) >= 3, statuses  # 1 running + 3 waiting were served
    refused = next(answer for answer in answers if b" 503 " in answer[:20])
    assert re.search(rb"(?i)\r\nretry-after: 5\r\n", refused)
    served = [name for name in finished if name.startswith("post")]
    # The pages were answered while password POSTs admitted before them were still waiting for the hasher.
    assert finished.index("/login/") < finished.index(served[-1])


def test_password_posts_whose_clients_left_before_their_turn_are_not_run(portal):
    browser = Browser(portal)
    form = {**browser.sign_in_form(), "username": "left-early", "password": "wrong-password"}
    for _ in range(3):  # the lane's thread and two of its three places in line
        _raw_post(portal, form, browser.cookies, close_at_once=True)
    # A request sent after them, in the same lane, is answered after every one of them was run or dropped.
    last = _raw_post(portal, {**form, "username": "after-them"}, browser.cookies)
    assert last.startswith(b"HTTP/1.1 200")
    time.sleep(2)  # settle: a server running them in parallel (no lane) would still be hashing
    run = _query(portal, "SELECT COUNT(*) FROM axes_accessfailurelog WHERE username = 'left-early'")[0][0]
    assert run <= 1  # at most the one already running when its client left
    log = portal.log_text()
    assert "the client left before the request ran" in log
    assert "Traceback" not in log and "Exception inside application" not in log


def test_a_huge_body_is_refused_before_daphne_reads_it(portal):
    with socket.create_connection(("127.0.0.1", portal.port), timeout=20) as sock:
        sock.sendall(
            b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 536870912\r\n\r\n" + b"x" * 65536
        )
        answer = sock.recv(65536)  # 512 MB announced, 64 KB sent: the answer comes now, not after 512 MB
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert "Traceback" not in portal.log_text()


def test_responses_carry_the_security_headers(portal):
    response, _ = Browser(portal).request("GET", "/login/face/")
    assert "camera=(self)" in response.getheader("Permissions-Policy")
    assert "script-src 'self'" in response.getheader("Content-Security-Policy")
