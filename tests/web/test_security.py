"""The token (header, cookie, or once in the URL) and the loopback Host check."""

from __future__ import annotations

import pytest

from tests.report.seeded import BASELINE
from tests.web.conftest import TOKEN
from tests.web.server import fetch


@pytest.mark.parametrize("path", ["/", f"/runs/{BASELINE.run_id}", "/api/runs",
                                  "/api/openapi.json", "/assets/caliper.js"])
@pytest.mark.parametrize("headers, status", [
    ({}, 401),                                              # nothing offered
    ({"Authorization": "Bearer wrong-token-123"}, 401),     # a wrong token
    ({"Authorization": f"Basic {TOKEN}"}, 401),             # not a bearer token
    ({"Cookie": "caliper_token=nope"}, 401),                # a wrong cookie
    ({"Authorization": f"Bearer {TOKEN}"}, 200),            # the header
    ({"Cookie": f"caliper_token={TOKEN}"}, 200),            # the cookie
])
def test_every_request_needs_the_token(guarded, path, headers, status):
    answer = fetch(guarded, path, headers)
    assert answer.status == status
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer" and b"rows" not in answer.body


def test_a_token_in_the_url_becomes_a_cookie(guarded):
    answer = fetch(guarded, f"/?model=ranker&token={TOKEN}")
    assert answer.status == 303 and answer.headers["location"] == "/?model=ranker"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"caliper_token={TOKEN}")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert fetch(guarded, "/?token=wrong").status == 401


@pytest.mark.parametrize("host, status", [
    ("127.0.0.1:8765", 200),       # loopback by address
    ("localhost:8765", 200),       # by name
    ("[::1]:8765", 200),           # IPv6 loopback
    ("evil.example:8765", 421),    # a rebinding name pointing at 127.0.0.1
    ("127.0.0.1.evil.example", 421),
])
def test_without_a_token_only_loopback_hosts_are_answered(ui, host, status):
    assert fetch(ui, "/api/tags", {"Host": host}).status == status


def test_with_a_token_any_host_is_fine(guarded):
    answer = fetch(guarded, "/api/tags", {"Host": "ui.example", "Authorization":
                                          f"Bearer {TOKEN}"})
    assert answer.status == 200
