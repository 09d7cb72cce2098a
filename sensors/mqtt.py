"""The MQTT adapter: a persistent QoS 1 session with acknowledgements we control.

paho-mqtt 2.x runs its network loop in its own thread (``loop_start``) and
reconnects by itself. Each message is converted to a frozen :class:`Inbound`
in that thread and handed to the event loop with ``call_soon_threadsafe``;
no paho object crosses into the rest of the server.

At-least-once: the client is created with ``manual_ack=True``, so paho sends
no PUBACK until :meth:`MqttSession.ack` is called, which the ingest does only
after the transaction storing the message has committed. With clean start off
and a session expiry, the broker keeps unacknowledged and newly arriving
messages while we are away and sends them again when we return.

Bound and backpressure: we ask the broker (MQTT 5 Receive Maximum) to keep
at most ``receive_maximum`` unacknowledged QoS 1 messages in flight, but we do
not rely on it: Mosquitto 2.0.11 was seen here sending more under load. So the
paho thread takes a slot of a semaphore of that size before handing over a
QoS 1 message, and blocks when none is free; the broker then waits on TCP
flow control and keeps the messages. :meth:`MqttSession.next_batch` frees the
slots of the messages it returns. QoS 0 messages (unit positions) never block:
they are dropped, and counted, when the queue already holds
``receive_maximum`` messages. The queue therefore never holds more than
``2 * receive_maximum``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

# Unacknowledged QoS 1 messages in flight to the server: large enough for
# group commits to fill, and the most a broker crash can lose (docs/operations.md).
RECEIVE_MAXIMUM = 1000


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message, converted at the boundary."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    # Which connection delivered it: a message id is only meaningful on the
    # connection that assigned it, so acks for an older one are dropped (the
    # broker redelivers those messages and the database drops the copies).
    generation: int
    retain: bool = False


class MqttSession:
    """A subscribing (and publishing) MQTT 5 client bound to an asyncio loop.

    Args:
        host, port, username, password: the broker.
        client_id: fixed per server instance, so the broker keeps our session.
        subscriptions: topic filters, subscribed with QoS 1 on every connect.
        session_expiry_s: how long the broker keeps the session while we are away.
        receive_maximum: the most unacknowledged QoS 1 messages in flight.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        subscriptions: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = RECEIVE_MAXIMUM,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # Unbounded as a container; bounded by the slots (see module docstring).
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._host, self._port = host, port
        self._subscriptions = tuple(subscriptions)
        self._receive_maximum = receive_maximum
        self._slots = threading.BoundedSemaphore(receive_maximum)
        self._closing = threading.Event()
        self._generation = 0
        self._lock = threading.Lock()
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._first_connect: asyncio.Future[None] = self._loop.create_future()
        # SUBACK/UNSUBACK waiters by packet id (guarded by _lock).
        self._replies: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        # The connect-time SUBSCRIBE's packet id -> its filters, to name a refused one.
        self._connect_subscribe: dict[int, list[str]] = {}
        self.dropped_qos0 = 0
        self.connects = 0
        self.disconnects = 0
        # Whether the last disconnection was the DISCONNECT we sent (not a loss).
        self._left_cleanly = False
        # Whether the broker still held our session at the last CONNACK.
        self.session_present: bool | None = None

        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if username is not None:
            client.username_pw_set(username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_inflight_messages_set(RECEIVE_MAXIMUM)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_reply
        client.on_unsubscribe = self._on_reply
        self._client = client
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
        props.ReceiveMaximum = receive_maximum
        self._connect_properties = props

    @property
    def connected(self) -> bool:
        """Connected, and the broker has answered the constructor's subscriptions."""
        return self._connected.is_set()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and start the network thread; wait up to ``timeout`` for the first CONNACK.

        A broker that is down at start is not fatal: paho keeps retrying and
        ``/healthz`` reports the broker as unreachable meanwhile.
        """
        self._client.connect_async(
            self._host, self._port, keepalive=30, clean_start=False, properties=self._connect_properties
        )
        self._client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), timeout)
        except TimeoutError:
            log.warning(
                "MQTT broker %s:%d not reachable yet; retrying in the background", self._host, self._port
            )

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def ack(self, message: Inbound) -> None:
        """Send the PUBACK for a QoS 1 message, if its connection is still the current one."""
        if message.qos == 0:
            return
        with self._lock:
            if message.generation != self._generation:
                return
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Queue a publish; paho sends it (and retries QoS 1) from its thread."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS and info.rc != paho.MQTT_ERR_NO_CONN:
            raise ConnectionError(f"MQTT publish to {topic} failed: {paho.error_string(info.rc)}")

    async def publish_confirmed(self, topic: str, payload: bytes, timeout: float) -> bool:
        """Publish at QoS 1 and wait for the broker's PUBACK.

        Returns:
            True once the broker has acknowledged (it then owns the message,
            queueing it for a subscriber that is away); False when not
            connected, or no PUBACK came within ``timeout`` seconds.
        """
        # Not connected: do not publish at all. paho would keep a QoS 1
        # message it could not send and send it on reconnect, so a caller
        # retrying every second through an outage would queue a copy a second.
        if not self._client.is_connected():
            return False
        info = self._client.publish(topic, payload, qos=1)
        try:
            # wait_for_publish blocks on a condition paho's thread sets: off the loop.
            await asyncio.to_thread(info.wait_for_publish, timeout)
            return info.is_published()
        except (RuntimeError, ValueError):
            return False  # not sent: the connection went, or paho's queue is full

    async def next_batch(self, limit: int) -> list[Inbound]:
        """Wait for a message, then return it with whatever else is queued, up to ``limit``."""
        batch = [await self._queue.get()]
        while len(batch) < limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        for message in batch:
            if message.qos > 0:
                self._slots.release()
        return batch

    def pending(self) -> int:
        return self._queue.qsize()

    async def subscribe(self, filters: Sequence[str], timeout: float = 10.0) -> None:
        """Subscribe to ``filters`` (QoS 1) on the current connection and wait for the SUBACK.

        They join the session; they are not renewed on reconnect (those given
        to the constructor are).

        Raises:
            ConnectionError: not connected, or the broker refused a filter.
            TimeoutError: no SUBACK within ``timeout`` seconds.
        """
        codes = await self._request(lambda: self._client.subscribe([(f, 1) for f in filters]), timeout)
        refused = [f"{f} ({code})" for f, code in zip(filters, codes, strict=False) if code.is_failure]
        if refused:
            raise ConnectionError(f"MQTT broker refused subscription(s): {', '.join(refused)}")

    async def unsubscribe(self, filters: Sequence[str], timeout: float = 10.0) -> None:
        """Remove ``filters`` from the session and wait for the UNSUBACK.

        Messages the broker had already queued for the session stay queued and
        are still delivered (seen with Mosquitto 2.0; docs/scaling.md); only
        new ones stop. A filter the session did not hold is not an error.

        Raises:
            ConnectionError: not connected, or the broker refused.
            TimeoutError: no UNSUBACK within ``timeout`` seconds.
        """
        codes = await self._request(lambda: self._client.unsubscribe(list(filters)), timeout)
        refused = [f"{f} ({code})" for f, code in zip(filters, codes, strict=False) if code.is_failure]
        if refused:
            raise ConnectionError(f"MQTT broker refused to unsubscribe: {', '.join(refused)}")

    async def _request(
        self, send: Callable[[], tuple[MQTTErrorCode, int | None]], timeout: float
    ) -> list[ReasonCode]:
        reply: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        # Held while sending and registering, so the reply (handled in paho's
        # thread, which takes the same lock) cannot come before we wait for it.
        with self._lock:
            rc, mid = send()
            if rc != paho.MQTT_ERR_SUCCESS or mid is None:
                raise ConnectionError(f"MQTT request not sent: {paho.error_string(rc)}")
            self._replies[mid] = reply
        try:
            return await asyncio.wait_for(reply, timeout)
        finally:
            with self._lock:
                self._replies.pop(mid, None)

    async def close(self) -> None:
        """Leave the session (the broker keeps it and queues for us) and stop the thread."""
        self._closing.set()
        if self._client.is_connected():
            self._client.disconnect()
        # loop_stop joins the network thread: a blocking call, so off the loop.
        await asyncio.to_thread(self._client.loop_stop)
        self._connected.clear()

    async def end_session(self, timeout: float = 10.0) -> bool:
        """Leave and have the broker delete our session (MQTT 5: session expiry 0 on DISCONNECT).

        Whatever the broker still holds for this client id is dropped with the
        session, and its subscriptions end: call it only once everything
        received is stored and acknowledged (``emergency drain-session``).

        Returns:
            True when the DISCONNECT went out on a live connection; False when
            not connected, in which case the broker keeps the session.
        """
        self._closing.set()
        sent = False
        if self._client.is_connected():
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            # disconnect()'s return code is no guide: paho's thread may write the
            # packet and exit before the call returns, which then says "no
            # connection" (seen in about one call in five). What counts is
            # paho reporting the normal disconnection it initiated.
            self._client.disconnect(properties=props)
            try:
                await asyncio.wait_for(self._disconnected.wait(), timeout)
                sent = self._left_cleanly
            except TimeoutError:
                sent = False
        await asyncio.to_thread(self._client.loop_stop)
        self._connected.clear()
        return sent

    # -- paho thread ---------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        self.session_present = bool(getattr(flags, "session_present", False))
        log.info(
            "MQTT connected to %s:%d (session present: %s)",
            self._host,
            self._port,
            getattr(flags, "session_present", "?"),
        )
        if self._subscriptions:
            with self._lock:
                rc, mid = client.subscribe([(topic, 1) for topic in self._subscriptions])
                if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
                    # Ready (and healthy for /healthz) once the broker has answered:
                    # until then an alarm published, say, right after a first start
                    # could match no subscription and go nowhere.
                    self._connect_subscribe = {mid: list(self._subscriptions)}
                    return
        self._loop.call_soon_threadsafe(self._set_connected, True)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        log.warning("MQTT disconnected: %s", reason)
        self.disconnects += 1
        self._left_cleanly = not reason.is_failure and not flags.is_disconnect_packet_from_server
        self._loop.call_soon_threadsafe(self._set_connected, False)

    def _on_reply(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        with self._lock:
            reply = self._replies.get(mid)
            filters = self._connect_subscribe.pop(mid, None)
        if reply is not None:
            self._loop.call_soon_threadsafe(_settle, reply, list(codes))
        elif filters is not None:
            # Without this, a broker that refuses a filter (an ACL, or no
            # shared-subscription support for $share/...) would leave the
            # server connected, healthy-looking and receiving nothing.
            refused = [f"{f} ({c})" for f, c in zip(filters, codes, strict=False) if c.is_failure]
            if refused:
                log.error("MQTT broker refused subscription(s): %s", ", ".join(refused))
            self._loop.call_soon_threadsafe(self._set_connected, True)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.qos > 0:
            # Backpressure: block paho's thread (so it stops reading the
            # socket) until the server has taken earlier messages.
            while not self._slots.acquire(timeout=0.5):
                if self._closing.is_set():
                    return  # not acknowledged: the broker redelivers it next session
        inbound = Inbound(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            mid=message.mid,
            generation=self._generation,
            retain=bool(message.retain),
        )
        self._loop.call_soon_threadsafe(self._deliver, inbound)

    # -- event loop ----------------------------------------------------------

    def _set_connected(self, connected: bool) -> None:
        if connected:
            self._connected.set()
            self._disconnected.clear()
            if not self._first_connect.done():
                self._first_connect.set_result(None)
        else:
            self._connected.clear()
            self._disconnected.set()

    def _deliver(self, inbound: Inbound) -> None:
        if inbound.qos == 0 and self._queue.qsize() >= self._receive_maximum:
            self.dropped_qos0 += 1
            return
        self._queue.put_nowait(inbound)


def _settle(reply: asyncio.Future[list[ReasonCode]], codes: list[ReasonCode]) -> None:
    if not reply.done():  # the waiter may have timed out meanwhile
        reply.set_result(codes)
