"""Who a job counts for in the torch queue: a client's address as the host's proxies vouch for it,
hashed; one key for every owner id of an anonymous client; a logged-in user as themself; the
per-client job cap.

.venv/bin/python -m pytest tests/hosting/test_fairness.py
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.fairness import (
    check_client_jobs,
    client_address,
    client_key,
    current_client,
    fair_key,
    max_client_jobs,
    request_client,
    serving,
    trusted_proxies,
)

SPACES = {"SYSTEM": "spaces"}


def a_request(peer: str | None, forwarded: str | None = None) -> SimpleNamespace:
    """What a handler sees of `gr.Request`: the connection's peer and the headers."""
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return SimpleNamespace(client=SimpleNamespace(host=peer), headers=headers)


def test_without_trusted_proxies_only_the_connection_counts():
    # A client can write any X-Forwarded-For it likes: on a machine with no proxy it is ignored.
    assert trusted_proxies({}) == 0
    assert client_address("203.0.113.5", {"x-forwarded-for": "198.51.100.1"}, {}) == "203.0.113.5"
    assert client_address(None, {}, {}) is None


def test_behind_proxies_the_address_they_appended_counts_not_what_the_client_wrote():
    assert trusted_proxies(SPACES) == 1  # the Space's proxy
    # The client forged "1.1.1.1"; the proxy appended the address it really came from.
    headers = {"X-Forwarded-For": "1.1.1.1, 203.0.113.5"}
    assert client_address("10.16.3.80", headers, SPACES) == "203.0.113.5"
    two = {"RTDEMO_TRUSTED_PROXIES": "2"}
    chain = {"x-forwarded-for": "1.1.1.1,203.0.113.5, 10.0.0.9"}  # client, proxy 1, proxy 2
    assert client_address("10.0.0.1", chain, two) == "203.0.113.5"
    # Not through the proxies as expected: the peer (one key for all such requests).
    assert client_address("10.16.3.80", {}, SPACES) == "10.16.3.80"
    assert client_address("10.0.0.1", {"x-forwarded-for": "203.0.113.5"}, two) == "10.0.0.1"
    with pytest.raises(UserError, match="RTDEMO_TRUSTED_PROXIES='one'"):
        trusted_proxies({"RTDEMO_TRUSTED_PROXIES": "one"})
    with pytest.raises(UserError, match="RTDEMO_TRUSTED_PROXIES"):
        trusted_proxies({"RTDEMO_TRUSTED_PROXIES": "-1"})


def test_a_key_hides_the_address_and_groups_an_ipv6_network():
    key = client_key("203.0.113.5")
    assert key.startswith("client-") and "203" not in key and len(key) == len("client-") + 20
    assert client_key(" 203.0.113.5 ") == key and client_key("::ffff:203.0.113.5") == key
    assert client_key("203.0.113.6") != key
    # One machine holds many addresses of its /64: one key; another /64 is another client.
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::99")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")


def test_anonymous_owners_count_for_their_client_and_users_for_themselves():
    client = client_key("203.0.113.5")
    assert fair_key("anon-0000000000000001", client) == client
    assert fair_key("anon-0000000000000002", client) == client  # a fresh id: the same key
    assert fair_key("hf:bea", client) == "hf:bea"  # logged in: the login is the visitor
    assert fair_key("anon-0000000000000001", None) == "anon-0000000000000001"  # no request


def test_serving_a_request_sets_the_client_for_this_thread_only():
    assert current_client() is None
    with serving(a_request("203.0.113.5")) as key:
        assert key == current_client() == client_key("203.0.113.5")
        with serving(None):  # a handler called directly: no client
            assert current_client() is None
        assert current_client() == key
    assert current_client() is None
    assert request_client(a_request(None)) is None


def test_the_per_client_cap_defaults_on_spaces_only():
    assert max_client_jobs({}) == 0 and max_client_jobs(SPACES) == 4
    check_client_jobs(100, {})  # no limit
    check_client_jobs(3, SPACES)
    with pytest.raises(UserError, match="visitors from your address already have 4 job"):
        check_client_jobs(4, SPACES)
    with pytest.raises(UserError, match="log in with Hugging Face"):
        check_client_jobs(1, {"RTDEMO_MAX_CLIENT_JOBS": "1"})
    with pytest.raises(UserError, match="RTDEMO_MAX_CLIENT_JOBS"):
        max_client_jobs({"RTDEMO_MAX_CLIENT_JOBS": "many"})
