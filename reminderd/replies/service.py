"""Receiving replies in the daemon: a poller thread (`sms.replies: poll`) or the webhook.

Both hand each message to `handler.ReplyHandler`, which acts on it once.
The poller asks for messages since the later of when replies began here
(older ones were never meant for this reminderd) and one day ago, and backs
off while the provider cannot be asked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from ..errors import ReminderdError
from ..retry import backoff
from ..store.protocol import StateStore
from .handler import ReplyHandler
from .webhook import InboundMessage, ReplyWebhook

log = logging.getLogger(__name__)
META_REPLIES_SINCE = "replies_since"
LOOK_BACK = timedelta(days=1)  # a reply older than this is not acted on
SLACK = timedelta(minutes=2)  # the provider's clock and ours may differ a little


class ReplyPoller:
    def __init__(
        self,
        list_since: Callable[[datetime], list[InboundMessage]],
        handler: ReplyHandler,
        db: StateStore,
        interval: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.list_since = list_since
        self.handler = handler
        self.db = db
        self.interval = interval.total_seconds()
        self.clock = clock
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="replies", daemon=True)
        began = db.get(META_REPLIES_SINCE)
        if began is None:
            began = clock().isoformat()
            db.set(META_REPLIES_SINCE, began)
        self.began = datetime.fromisoformat(began)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def poll_once(self) -> list[str]:
        """One look at the provider's list; returns what was made of each new message."""
        now = self.clock()
        floor = max(self.began - SLACK, now - LOOK_BACK)
        results = []
        for msg in self.list_since(floor):
            if msg.sent_at is not None and msg.sent_at < floor:
                continue  # before replies began here, or too old to act on
            if self.handler.seen(msg.sid):
                continue
            results.append(self.handler.handle(msg))
        return results

    def _loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                self.poll_once()
                failures = 0
            except ReminderdError as exc:
                failures += 1
                log.warning("SMS replies: %s; asking again later", exc)
            except Exception:  # a bug must not end the poller
                failures += 1
                log.exception("SMS replies: polling failed; asking again later")
            wait = (
                self.interval
                if failures == 0
                else max(self.interval, backoff(failures - 1, base=self.interval))
            )
            self.stopping.wait(wait)


def start_replies(
    mode: str,
    handler: ReplyHandler,
    db: StateStore,
    *,
    list_since: Callable[[datetime], list[InboundMessage]] | None,
    interval: timedelta,
    clock: Callable[[], datetime],
    listen: str | None = None,
    public_url: str | None = None,
    auth_token: str | None = None,
) -> ReplyPoller | ReplyWebhook | None:
    """The configured receiver, started; None when replies are off."""
    if mode == "poll" and list_since is not None:
        poller = ReplyPoller(list_since, handler, db, interval, clock)
        poller.start()
        log.info("SMS replies: polling every %d s", int(interval.total_seconds()))
        return poller
    if mode == "webhook" and listen and public_url and auth_token:
        hook = ReplyWebhook(listen, public_url, auth_token, lambda m: _handle(handler, m))
        hook.start()
        host, port = hook.address
        log.info("SMS replies: webhook on %s:%d for %s", host, port, public_url)
        return hook
    return None


def _handle(handler: ReplyHandler, msg: InboundMessage) -> None:
    handler.handle(msg)
