"""The front door's pure rules: key hashing, request bodies, origins, return URLs and the rate limiter."""

from __future__ import annotations

import hashlib

import pytest

from leadflow.domain import api_intake as rules


def test_a_new_key_is_random_and_only_its_sha256_is_kept():
    first, second = rules.new_key(), rules.new_key()
    assert first.token != second.token and first.token.startswith(rules.KEY_PREFIX)
    # 32 random bytes: 43 URL-safe base64 characters after the prefix.
    assert len(first.token) == len(rules.KEY_PREFIX) + 43
    assert first.key_hash == hashlib.sha256(first.token.encode()).hexdigest() == rules.hash_key(first.token)
    assert first.token not in first.key_hash and first.token.startswith(first.prefix)
    assert len(first.prefix) == len(rules.KEY_PREFIX) + rules.KEY_SHOWN_CHARS


@pytest.mark.parametrize(("token", "looks"), [
    ("lfk_" + "A" * 43, True), (None, False), ("", False), ("secret", False), ("lfk_short", False),
    ("lfk_" + "x" * 200, False),
])
def test_only_key_shaped_strings_are_looked_up(token, looks):
    assert rules.looks_like_key(token) is looks


@pytest.mark.parametrize(("content_type", "body", "fields"), [
    ("application/json", b'{"email": "a@b.com", "n": 3}', {"email": "a@b.com", "n": 3}),
    ("application/json; charset=utf-8", '{"first_name": "Zoë"}'.encode(), {"first_name": "Zoë"}),
    ("application/vnd.api+json", b'{"email": "a@b.com"}', {"email": "a@b.com"}),
    (None, b'  {"email": "a@b.com"}', {"email": "a@b.com"}),
    ("application/x-www-form-urlencoded", b"email=a%40b.com&first_name=J+D&message=&email=c%40d.com",
     {"email": "a@b.com", "first_name": "J D"}),
    ("application/x-www-form-urlencoded; charset=iso-8859-1", b"first_name=Zo%EB&email=a%40b.com",
     {"first_name": "Zoë", "email": "a@b.com"}),
    (None, b"email=a%40b.com", {"email": "a@b.com"}),
])
def test_json_and_form_bodies_become_fields(content_type, body, fields):
    assert rules.parse_body(content_type, body) == fields


@pytest.mark.parametrize(("content_type", "body", "status"), [
    ("application/json", b'{"email": ', 400),
    ("application/json", b'["a@b.com"]', 400),
    ("application/json", b'"a@b.com"', 400),
    ("application/json", b"", 400),
    ("application/json; charset=nope", b"{}", 400),
    ("application/json", b"\xff\xfe{", 400),
    ("application/x-www-form-urlencoded", b"email", 400),
    ("application/x-www-form-urlencoded", b"email=&name=", 400),
    (None, b"just text", 400),
    ("text/plain", b"email=a@b.com", 415),
    ("multipart/form-data; boundary=x", b"--x--", 415),
    ("application/xml", b"<lead/>", 415),
])
def test_bodies_that_are_neither_json_nor_a_form_are_refused(content_type, body, status):
    with pytest.raises(rules.RequestError) as refused:
        rules.parse_body(content_type, body)
    assert refused.value.status == status and "\n" not in str(refused.value)


def test_the_apis_own_fields_leave_the_payload():
    fields = {"email": "a@b.com", "api_key": "lfk_x", "retURL": "https://w.example/t", "return_url": ""}
    assert rules.take_fields(fields, rules.KEY_FIELDS) == "lfk_x"
    assert rules.take_fields(fields, rules.RETURN_URL_FIELDS) == "https://w.example/t"
    assert fields == {"email": "a@b.com"}
    assert rules.take_fields(fields, rules.KEY_FIELDS) is None


@pytest.mark.parametrize(("origin", "normal"), [
    ("https://www.example.com", "https://www.example.com"),
    ("HTTPS://WWW.Example.com/", "https://www.example.com"),
    ("https://www.example.com:443", "https://www.example.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:8000", "http://[::1]:8000"),
])
def test_origins_are_compared_as_browsers_send_them(origin, normal):
    assert rules.normalize_origin(origin) == normal


@pytest.mark.parametrize("origin", ["www.example.com", "ftp://example.com", "https://example.com/form",
                                    "https://user@example.com", "null", ""])
def test_what_is_not_an_origin_is_refused(origin):
    with pytest.raises(ValueError, match="not an origin"):
        rules.normalize_origin(origin)


@pytest.mark.parametrize(("origin", "allowed", "ok"), [
    ("https://www.example.com", ["https://www.example.com"], True),
    ("https://www.example.com:443", ["https://www.example.com"], True),
    ("http://www.example.com", ["https://www.example.com"], False),
    ("https://example.com", ["https://www.example.com"], False),
    ("null", ["https://www.example.com"], False),
    ("null", ["*"], True),
    (None, ["*"], False),
    ("https://www.example.com", [], False),
])
def test_a_key_allows_only_its_origins(origin, allowed, ok):
    assert rules.origin_allowed(origin, allowed) is ok


@pytest.mark.parametrize(("url", "allowed", "ok"), [
    ("https://www.example.com/thanks.html?x=1", ["https://www.example.com"], True),
    ("https://evil.example.net/thanks", ["https://www.example.com"], False),
    ("javascript:alert(1)", ["*"], False),
    ("/thanks.html", ["https://www.example.com"], False),
    ("https://anywhere.example/t", ["*"], True),
])
def test_a_return_url_must_be_on_the_keys_origins(url, allowed, ok):
    if ok:
        assert rules.check_return_url(url, allowed) == url
    else:
        with pytest.raises(rules.RequestError) as refused:
            rules.check_return_url(url, allowed)
        assert (refused.value.status, refused.value.field) == (422, "return_url")


@pytest.mark.parametrize(("value", "ok"), [
    (None, True), ("order-123", True), ("x" * 200, True), ("x" * 201, False), ("", False), ("é", False),
    ("a\tb", False),
])
def test_idempotency_keys_are_short_printable_ascii(value, ok):
    if ok:
        assert rules.check_idempotency_key(value) == value
    else:
        with pytest.raises(rules.RequestError) as refused:
            rules.check_idempotency_key(value)
        assert refused.value.status == 400


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "burst", "allowed_at_once", "wait"), [
    (60, None, 10, 1.0),      # ten seconds' worth at once, then one a second
    (6, None, 1, 10.0),
    (600, 5, 5, 0.1),
    (1, None, 1, 60.0),
])
def test_a_bucket_lets_its_burst_through_then_says_how_long_to_wait(rate, burst, allowed_at_once, wait):
    clock = Clock()
    limiter = rules.RateLimiter(clock=clock)
    assert [limiter.take("k", rate, burst) for _ in range(allowed_at_once)] == [0.0] * allowed_at_once
    assert limiter.take("k", rate, burst) == pytest.approx(wait)
    clock.now += wait
    assert limiter.take("k", rate, burst) == 0.0
    assert limiter.take("k", rate, burst) > 0


def test_buckets_are_separate_refill_to_their_burst_and_zero_means_no_limit():
    clock = Clock()
    limiter = rules.RateLimiter(clock=clock)
    assert limiter.take("a", 6) == 0.0 and limiter.take("a", 6) > 0
    assert limiter.take("b", 6) == 0.0
    clock.now += 3600
    # An hour idle refills to the burst (one), not to 360.
    assert limiter.take("a", 6) == 0.0 and limiter.take("a", 6) > 0
    assert all(limiter.take("c", 0) == 0.0 for _ in range(1000))


def test_forgotten_buckets_start_full_and_memory_stays_bounded():
    limiter = rules.RateLimiter(clock=Clock(), max_buckets=3)
    for name in ("a", "b", "c", "d"):
        assert limiter.take(name, 6) == 0.0
    assert len(limiter._buckets) == 3
    assert limiter.take("a", 6) == 0.0  # forgotten: full again
    assert limiter.take("d", 6) > 0


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after_is_whole_seconds_rounded_up(seconds, header):
    assert rules.retry_after(seconds) == header


def test_a_form_whose_escapes_are_not_text_in_its_charset_is_refused():
    with pytest.raises(rules.RequestError) as refused:
        rules.parse_body("application/x-www-form-urlencoded", b"first_name=Zo%EB&email=a%40b.com")
    assert refused.value.status == 400
