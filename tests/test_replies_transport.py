"""Replies in: the webhook Twilio posts to (a real server on loopback, real HTTP), and
the poller that lists inbound messages (the testbed's stateful Twilio mock)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from servers import TwilioMock
from twilio.request_validator import RequestValidator

from reminderd.errors import PortTaken, SmsError
from reminderd.phone import mask
from reminderd.replies.poll import list_inbound
from reminderd.replies.webhook import MAX_BODY, TWIML_EMPTY, InboundMessage, ReplyWebhook
from reminderd.sms.providers import TwilioSender

TOKEN = "test-auth-token-not-secret"
PUBLIC_URL = "https://reminders.example.com/twilio/sms"
PHONE = "+306912345678"
OURS = "+15017122661"
FORM = {
    "MessageSid": "SM" + "a" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": PHONE,
    "To": OURS,
    "Body": "#k3 DONE",
    "NumMedia": "0",
}


class Hook:
    """A started webhook and what its callback saw."""

    def __init__(self, fail: bool = False) -> None:
        self.got: list[InboundMessage] = []
        self.fail = fail

        def on_message(message: InboundMessage) -> None:
            if self.fail:
                raise RuntimeError("the state database is locked")
            self.got.append(message)

        self.webhook = ReplyWebhook("127.0.0.1:0", PUBLIC_URL, TOKEN, on_message)
        self.webhook.start()

    def post(
        self,
        form: dict[str, str] | None = None,
        *,
        signature: str | None = "valid",
        path: str = "/twilio/sms",
        method: str = "POST",
        content_type: str = "application/x-www-form-urlencoded",
    ) -> tuple[int, dict[str, str], bytes]:
        form = FORM if form is None else form
        body = urlencode(form).encode()
        headers = {"Content-Type": content_type}
        if signature == "valid":
            signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL, form)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        host, port = self.webhook.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(method, path, body=body if method == "POST" else None, headers=headers)
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.webhook.close()


def test_a_signed_reply_is_handed_over_and_answered_with_empty_twiml(hook: Hook) -> None:
    status, headers, body = hook.post()
    assert status == 200
    assert headers["Content-Type"] == "text/xml"
    assert body == TWIML_EMPTY == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert hook.got == [InboundMessage(FORM["MessageSid"], PHONE, OURS, "#k3 DONE", None)]


def test_unicode_body(hook: Hook) -> None:
    form = dict(FORM, Body="DONE \u03b5\u03c5\u03c7\u03b1\u03c1\u03b9\u03c3\u03c4\u03ce \u2713")
    status, _, _ = hook.post(form)
    assert status == 200 and hook.got[-1].body == form["Body"]


def test_the_signature_is_checked_against_the_public_url_not_the_request(hook: Hook) -> None:
    # behind a proxy the request line differs from what Twilio signed; only public_url counts
    status, _, _ = hook.post(path="/twilio/sms?via=proxy")
    assert status == 200


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "",  # empty
        "bm90IGEgc2lnbmF0dXJl",  # not the right one
        RequestValidator("another-token").compute_signature(PUBLIC_URL, FORM),
        RequestValidator(TOKEN).compute_signature("https://elsewhere.example/twilio/sms", FORM),
    ],
)
def test_a_missing_or_bad_signature_is_403_and_changes_nothing(
    hook: Hook, signature: str | None
) -> None:
    status, _, _ = hook.post(signature=signature)
    assert status == 403
    assert hook.got == []


def test_a_tampered_body_is_403(hook: Hook) -> None:
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL, FORM)
    status, _, _ = hook.post(dict(FORM, Body="SKIP"), signature=signature)
    assert status == 403 and hook.got == []


def test_wrong_path_is_404(hook: Hook) -> None:
    for path in ("/", "/twilio", "/twilio/sms/", "/other"):
        status, _, _ = hook.post(path=path)
        assert status == 404, path
    assert hook.got == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_are_405(hook: Hook, method: str) -> None:
    status, headers, _ = hook.post(method=method)
    assert status == 405 and headers["Allow"] == "POST"
    assert hook.got == []


def test_get_elsewhere_is_404(hook: Hook) -> None:
    status, _, _ = hook.post(method="GET", path="/favicon.ico")
    assert status == 404


def test_oversize_body_is_413_without_reading_it(hook: Hook) -> None:
    host, port = hook.webhook.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/twilio/sms")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # the body never comes: the answer must not wait for it
    reply = conn.getresponse()
    assert reply.status == 413
    conn.close()
    assert hook.got == []


def test_a_body_at_the_limit_is_read(hook: Hook) -> None:
    form = dict(FORM)
    form["Pad"] = ""
    form["Pad"] = "x" * (MAX_BODY - len(urlencode(form)))
    assert len(urlencode(form)) == MAX_BODY
    status, _, _ = hook.post(form)
    assert status == 200 and len(hook.got) == 1


def test_not_a_form_is_415(hook: Hook) -> None:
    status, _, _ = hook.post(content_type="application/json")
    assert status == 415 and hook.got == []


def test_no_content_length_is_411(hook: Hook) -> None:
    host, port = hook.webhook.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("POST", "/twilio/sms")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()


def test_a_signed_form_without_message_sid_is_400(hook: Hook) -> None:
    form = {k: v for k, v in FORM.items() if k != "MessageSid"}
    status, _, _ = hook.post(form)
    assert status == 400 and hook.got == []


def test_a_failing_callback_is_500_so_twilio_retries(caplog: pytest.LogCaptureFixture) -> None:
    h = Hook(fail=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="reminderd.replies.webhook"):
            status, _, _ = h.post()
        assert status == 500
        h.fail = False
        status, _, _ = h.post()  # Twilio's retry: same MessageSid, the caller dedupes
        assert status == 200 and [m.sid for m in h.got] == [FORM["MessageSid"]]
    finally:
        h.webhook.close()
    logged = caplog.text
    assert "failed" in logged
    assert PHONE not in logged and TOKEN not in logged and mask(PHONE) in logged


def test_logs_never_hold_the_token_or_a_full_number(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        hook.post()
        hook.post(signature="bad")
    assert "bad signature" in caplog.text
    assert TOKEN not in caplog.text and PHONE not in caplog.text


def test_a_silent_client_does_not_hold_the_server(hook: Hook) -> None:
    host, port = hook.webhook.address
    with socket.create_connection((host, port), timeout=10) as idle:
        idle.sendall(b"POST /twilio/sms HTTP/1.1\r\n")  # and then nothing
        status, _, _ = hook.post()  # served meanwhile, on another thread
        assert status == 200


def test_port_taken_is_a_clear_error(hook: Hook) -> None:
    host, port = hook.webhook.address
    other = ReplyWebhook(f"{host}:{port}", PUBLIC_URL, TOKEN, lambda m: None)
    with pytest.raises(
        PortTaken, match=rf"sms.webhook_listen 127.0.0.1:{port}: the address is in use"
    ):
        other.start()


def test_close_stops_within_a_second_or_two() -> None:
    h = Hook()
    host, port = h.webhook.address
    assert h.post()[0] == 200
    started = time.monotonic()
    h.webhook.close()
    assert time.monotonic() - started < 2
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()
    h.webhook.close()  # twice is fine


def test_concurrent_posts_each_reach_the_callback(hook: Hook) -> None:
    results: list[int] = []

    def one(n: int) -> None:
        results.append(hook.post(dict(FORM, MessageSid=f"SM{n:032x}"))[0])

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [200] * 8
    assert sorted(m.sid for m in hook.got) == sorted(f"SM{n:032x}" for n in range(8))


# --- poll: the stateful Twilio mock ---------------------------------------------------

SID = "AC" + "0123456789abcdef" * 2


def inject(mock: TwilioMock, sender: str, to: str, body: str) -> str:
    request = urllib.request.Request(
        mock.url + "/__testbed/inbound",
        data=json.dumps({"from": sender, "to": to, "body": body, "visible_after": 0}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.load(reply)["sid"])


@pytest.mark.server
def test_list_inbound_returns_inbound_messages_to_our_number_only(mock: TwilioMock) -> None:
    mock.clear()
    sender = TwilioSender(SID, auth_token="test-token-not-secret", from_=OURS, api_url=mock.url)
    since = datetime.now(UTC) - timedelta(minutes=1)
    sender.send(PHONE, "10:00 Call Alex. #k3", 600)  # outbound, to the phone
    sender.send(OURS, "a message we sent to ourselves", 600)  # outbound, To is ours
    first = inject(mock, PHONE, OURS, "#k3 DONE")
    time.sleep(1.1)  # DateSent has whole seconds: the order is by time first
    second = inject(mock, "+306900000000", OURS, "who is this?")  # another number
    inject(mock, PHONE, "+15550001111", "to another of the account's numbers")

    found = list_inbound(sender._client, our_number=OURS, since=since)

    assert [m.sid for m in found] == [first, second]
    assert [(m.sender, m.to, m.body) for m in found] == [
        (PHONE, OURS, "#k3 DONE"),
        ("+306900000000", OURS, "who is this?"),
    ]
    for m in found:
        assert m.sent_at is not None and m.sent_at.tzinfo is not None
        assert abs(m.sent_at - datetime.now(UTC)) < timedelta(minutes=5)
    lists = [str(r["query"]) for r in mock.requests() if r.get("method") == "GET"]
    day = since.astimezone(UTC).date().isoformat()
    assert lists and all(f"DateSent%3E={day}&" in q + "&" for q in lists)  # by day, no time


@pytest.mark.server
def test_list_inbound_sorts_by_time_then_sid_and_keeps_the_whole_day(mock: TwilioMock) -> None:
    mock.clear()
    sender = TwilioSender(SID, auth_token="test-token-not-secret", from_=OURS, api_url=mock.url)
    sids = [inject(mock, PHONE, OURS, f"reply {n}") for n in range(5)]  # within a second or two
    later = datetime.now(UTC) + timedelta(hours=1)  # same UTC day (nearly always): still listed
    found = list_inbound(sender._client, our_number=OURS, since=datetime.now(UTC))
    assert sorted(m.sid for m in found) == sorted(sids)
    assert [(m.sent_at, m.sid) for m in found] == sorted((m.sent_at, m.sid) for m in found)
    if later.date() == datetime.now(UTC).date():
        assert len(list_inbound(sender._client, our_number=OURS, since=later)) == 5


@pytest.mark.server
def test_list_inbound_failures_are_sms_errors(mock: TwilioMock) -> None:
    mock.clear()
    sender = TwilioSender(SID, auth_token="test-token-not-secret", from_=OURS, api_url=mock.url)
    mock.fail_next(503, 20500, "busy", method="GET")
    with pytest.raises(SmsError) as busy:
        list_inbound(sender._client, our_number=OURS, since=datetime.now(UTC))
    assert not busy.value.permanent and busy.value.status == 503
    mock.fail_next(401, 20003, f"Authenticate {PHONE}", method="GET")
    with pytest.raises(SmsError) as refused:
        list_inbound(sender._client, our_number=OURS, since=datetime.now(UTC))
    assert refused.value.permanent and PHONE not in str(refused.value)


def test_list_inbound_network_failure_is_a_temporary_sms_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = TwilioSender(SID, auth_token="x", api_url=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(SmsError) as caught:
        list_inbound(sender._client, our_number=OURS, since=datetime.now(UTC))
    assert not caught.value.permanent
