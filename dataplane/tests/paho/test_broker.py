"""paho-mqtt (Eclipse's Python client, unchanged) against the Gridline broker.

Run by dataplane/tests/mqtt_paho.rs and tests/mqtt_wss.rs, which start the data plane and set
GRIDLINE_MQTT (host:port of plaintext MQTT; several, comma-separated, for the pods of one
Namespace: connections go to each in turn), and for the `wss` phase GRIDLINE_WSS (host:port)
and GRIDLINE_CA (the test CA, PEM). Usage: test_broker.py <phase> [case name ...].

Phases: `main` (every broker feature), `before_restart` / `after_restart` (the Rust side
restarts the broker between them on the same data dir), `wss` (MQTT over WebSockets over TLS),
`shutdown` (prints CONNECTED, then expects DISCONNECT 0x8B: the Rust side sends SIGTERM).
Each case prints `PASS <name>` or `FAIL <name>` and its traceback; the exit status is 1 when
one failed.

The access model is the example manifests' (deploy/examples): sensors publish under
devices/<own name>/telemetry, apps (dashboard) read devices/+/telemetry/# and send
floors/+/commands, everyone may use lab/#, `observer` may use everything (`#`),
`retired-sensor` is disabled. The Namespace uses insecureUsernameAuthentication: the username
is the identity.
"""

import os
import queue
import ssl
import sys
import threading
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

V311, V5 = "v3.1.1", "v5"
WAIT = 5.0  # seconds for anything that should happen
QUIET = 0.7  # seconds of silence that show something did not happen

NOT_AUTHORIZED = 0x87
BAD_USER_NAME_OR_PASSWORD = 0x86


# Where the next connection goes when the variable lists several pods of one Namespace
# (comma-separated): each connection the next pod, so that a case's publisher and subscriber
# (and a session's successive connections) sit on different pods.
_NEXT_POD = [0]


def address(variable):
    pods = os.environ[variable].split(",")
    chosen = pods[_NEXT_POD[0] % len(pods)]
    _NEXT_POD[0] += 1
    host, port = chosen.rsplit(":", 1)
    return host, int(port)


# Every peer of the running case, disconnected when it ends.
PEERS = []


class Peer:
    """A paho client on its own network thread; what it receives is queued."""

    def __init__(self, user, version=V5, client_id=None, clean=True, manual_ack=False,
                 transport="tcp", address_variable="GRIDLINE_MQTT"):
        PEERS.append(self)
        self.version = version
        self.client_id = client_id or f"{user}-{uuid.uuid4().hex[:10]}"
        self.address_variable = address_variable
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if version == V5 else mqtt.MQTTv311,
            clean_session=None if version == V5 else clean,
            transport=transport,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        self.client.username_pw_set(user)
        self.messages = queue.Queue()
        self.connack_received = threading.Event()
        self.connack = None  # (reason code value, session present, properties)
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self._acks = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _client, _userdata, flags, reason_code, properties):
        self.connack = (reason_code.value, flags.session_present, properties)
        self.connack_received.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        self.disconnect_reason = reason_code.value
        self.disconnected.set()

    def _ack(self, mid, value):
        with self._acked:
            self._acks[mid] = value
            self._acked.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        codes = reason_codes if isinstance(reason_codes, list) else [reason_codes]
        self._ack(mid, [code.value for code in codes])

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties):
        self._ack(mid, reason_code.value)

    def wait_ack(self, mid):
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, WAIT):
                raise AssertionError(f"no acknowledgement of packet {mid} within {WAIT} s")
            return self._acks.pop(mid)

    def connect(self, clean=True, expiry=None, receive_maximum=None, maximum_packet_size=None,
                will=None, will_delay=None, keepalive=30):
        """CONNECT and wait for the CONNACK; returns (reason code, session present)."""
        properties = None
        options = {}
        if will is not None:
            will_properties = None
            if will_delay is not None:
                will_properties = Properties(PacketTypes.WILLMESSAGE)
                will_properties.WillDelayInterval = will_delay
            topic, payload = will
            self.client.will_set(topic, payload, qos=1, properties=will_properties)
        if self.version == V5:
            properties = Properties(PacketTypes.CONNECT)
            if expiry is not None:
                properties.SessionExpiryInterval = expiry
            if receive_maximum is not None:
                properties.ReceiveMaximum = receive_maximum
            if maximum_packet_size is not None:
                properties.MaximumPacketSize = maximum_packet_size
            options["clean_start"] = clean
        host, port = address(self.address_variable)
        self.client.connect(host, port, keepalive, properties=properties, **options)
        self.client.loop_start()
        if not self.connack_received.wait(WAIT):
            raise AssertionError(f"{self.client_id}: no CONNACK within {WAIT} s")
        code, present, _ = self.connack
        return code, present

    def connected(self, **options):
        code, present = self.connect(**options)
        assert code == 0, f"{self.client_id}: CONNECT refused with 0x{code:02x}"
        return self

    def subscribe(self, topic, qos=1, no_local=False, retain_as_published=False,
                  retain_handling=0, subscription_id=None):
        """SUBSCRIBE one filter; the SUBACK's reason codes."""
        if self.version == V5:
            properties = None
            if subscription_id is not None:
                properties = Properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = subscription_id
            options = SubscribeOptions(qos=qos, noLocal=no_local,
                                       retainAsPublished=retain_as_published,
                                       retainHandling=retain_handling)
            _, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            _, mid = self.client.subscribe(topic, qos)
        return self.wait_ack(mid)

    def subscribed(self, topic, qos=1, **options):
        codes = self.subscribe(topic, qos, **options)
        assert codes == [qos], f"SUBSCRIBE {topic}: {codes}"
        return self

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        """PUBLISH; at QoS 1 and 2 the acknowledgement's reason code."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        if qos == 0:
            info.wait_for_publish(WAIT)
            return None
        return self.wait_ack(info.mid)

    def receive(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout} s") from None

    def receive_all(self, count):
        return [self.receive() for _ in range(count)]

    def nothing(self, within=QUIET):
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected {message.topic} {message.payload!r}")

    def disconnect(self, reason=None):
        """A normal DISCONNECT (MQTT 5: with `reason`)."""
        if reason is not None:
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=reason))
        else:
            self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Lose the connection without DISCONNECT, as a crashed client does."""
        sock = self.client.socket()
        self.client.loop_stop()
        sock.close()


def observer(topic, version=V5):
    return Peer("observer", version).connected().subscribed(topic)


def unique(name):
    return f"lab/{name}/{uuid.uuid4().hex[:8]}"


def v5_properties(packet_type=PacketTypes.PUBLISH, **values):
    properties = Properties(packet_type)
    for key, value in values.items():
        setattr(properties, key, value)
    return properties


CASES = {}


def case(*phases, versions=(None,)):
    """Register a case in `phases` (default `main`), once per MQTT version in `versions`."""
    phases = phases or ("main",)

    def register(function):
        for version in versions:
            name = function.__name__ if version is None else f"{function.__name__}[{version}]"
            run = function if version is None else (lambda f=function, v=version: f(v))
            for phase in phases:
                CASES.setdefault(phase, []).append((name, run))
        return function

    return register


BOTH = (V311, V5)


# --- connecting --------------------------------------------------------------------------


@case(versions=BOTH)
def test_a_known_client_connects(version):
    peer = Peer("sensor-1", version)
    assert peer.connect() == (0, False)
    peer.disconnect()


@case(versions=BOTH)
def test_an_unknown_or_disabled_client_is_refused(version):
    # 3.1.1 return codes 4 and 5; paho maps them to the MQTT 5 codes 0x86 and 0x87.
    code, _ = Peer("nobody-like-this", version).connect()
    assert code == BAD_USER_NAME_OR_PASSWORD, hex(code)
    code, _ = Peer("retired-sensor", version).connect()
    assert code == NOT_AUTHORIZED, hex(code)


@case()
def test_connack_grants_topic_aliases_and_limits():
    peer = Peer("sensor-1").connected()
    _, _, properties = peer.connack
    assert properties.TopicAliasMaximum == 10, properties
    assert properties.ReceiveMaximum == 100, properties
    peer.disconnect()


# --- QoS -----------------------------------------------------------------------------------


@case(versions=BOTH)
def test_qos_0_1_and_2_round_trip(version):
    topic = unique("qos")
    subscriber = Peer("dashboard", version).connected().subscribed(topic, qos=2)
    publisher = Peer("sensor-1", version).connected()
    for qos in (0, 1, 2):
        code = publisher.publish(topic, f"at qos {qos}", qos=qos)
        assert code in (None, 0), f"qos {qos}: 0x{code:02x}"
        message = subscriber.receive()
        assert (message.topic, message.payload, message.qos) == (
            topic, f"at qos {qos}".encode(), qos), (message.topic, message.payload, message.qos)
    subscriber.nothing()
    publisher.disconnect()
    subscriber.disconnect()


# --- sessions ------------------------------------------------------------------------------


def persistent(user, version, client_id, clean=False, **options):
    """A peer of a session that outlives its connection (v3.1.1 clean session 0; v5
    session expiry one hour unless `expiry` says otherwise)."""
    peer = Peer(user, version, client_id=client_id, clean=clean)
    if version == V5:
        options.setdefault("expiry", 3600)
    code, present = peer.connect(clean=clean, **options)
    assert code == 0, hex(code)
    return peer, present


@case(versions=BOTH)
def test_a_persistent_session_gets_the_qos1_messages_queued_while_away(version):
    topic, client_id = unique("queued"), f"keeper-{uuid.uuid4().hex[:8]}"
    # 3.1.1 keeps a session only for clean session 0; MQTT 5 keeps one by its expiry.
    subscriber, present = persistent("dashboard", version, client_id, clean=version == V5)
    assert not present
    subscriber.subscribed(topic)
    subscriber.disconnect()
    publisher = Peer("sensor-1", version).connected()
    for n in range(3):
        assert publisher.publish(topic, f"m{n}") == 0
    publisher.disconnect()
    subscriber, present = persistent("dashboard", version, client_id)
    assert present, "session present"
    payloads = [m.payload for m in subscriber.receive_all(3)]
    assert payloads == [b"m0", b"m1", b"m2"], payloads
    subscriber.nothing()
    subscriber.disconnect()


@case(versions=BOTH)
def test_clean_start_discards_the_session_and_its_subscriptions(version):
    topic, client_id = unique("clean"), f"cleaner-{uuid.uuid4().hex[:8]}"
    subscriber, _ = persistent("dashboard", version, client_id)
    subscriber.subscribed(topic)
    subscriber.disconnect()
    subscriber, present = persistent("dashboard", version, client_id, clean=True)
    assert not present
    Peer("sensor-1", version).connected().publish(topic, "after clean start")
    subscriber.nothing()
    subscriber.disconnect()


@case()
def test_a_session_ends_when_its_expiry_interval_passes():
    topic = unique("expiry")
    short, long_ = f"short-{uuid.uuid4().hex[:8]}", f"long-{uuid.uuid4().hex[:8]}"
    for client_id, expiry in ((short, 1), (long_, 30)):
        peer, _ = persistent("dashboard", V5, client_id, clean=True, expiry=expiry)
        peer.subscribed(topic)
        peer.disconnect()
    time.sleep(2.5)
    _, present = persistent("dashboard", V5, short, expiry=1)
    assert not present, "the 1 s session should have ended"
    _, present = persistent("dashboard", V5, long_, expiry=30)
    assert present, "the 30 s session should be there"


# --- retained messages ---------------------------------------------------------------------


@case(versions=BOTH)
def test_a_retained_message_is_sent_to_new_subscribers_until_deleted(version):
    topic = unique("retained")
    publisher = Peer("sensor-1", version).connected()
    assert publisher.publish(topic, "kept", retain=True) == 0
    subscriber = Peer("dashboard", version).connected().subscribed(topic)
    message = subscriber.receive()
    assert (message.payload, message.retain) == (b"kept", True)
    subscriber.disconnect()
    assert publisher.publish(topic, b"", retain=True) == 0  # an empty payload deletes it
    subscriber = Peer("dashboard", version).connected().subscribed(topic)
    subscriber.nothing()
    subscriber.disconnect()
    publisher.disconnect()


@case()
def test_retain_as_published_keeps_the_retain_flag_on_live_messages():
    topic = unique("rap")
    keeps = Peer("dashboard").connected().subscribed(topic, retain_as_published=True)
    clears = Peer("dashboard").connected().subscribed(topic)
    publisher = Peer("sensor-1").connected()
    publisher.publish(topic, "live", retain=True)
    assert keeps.receive().retain is True
    assert clears.receive().retain is False
    publisher.publish(topic, b"", retain=True)


@case()
def test_retain_handling_0_1_and_2():
    topic = unique("handling")
    publisher = Peer("sensor-1").connected()
    publisher.publish(topic, "kept", retain=True)
    always = Peer("dashboard").connected().subscribed(topic, retain_handling=0)
    assert always.receive().payload == b"kept"
    always.subscribed(topic, retain_handling=0)  # again: sent again
    assert always.receive().payload == b"kept"
    if_new = Peer("dashboard").connected().subscribed(topic, retain_handling=1)
    assert if_new.receive().payload == b"kept"
    if_new.subscribed(topic, retain_handling=1)  # not new: not sent
    if_new.nothing()
    never = Peer("dashboard").connected().subscribed(topic, retain_handling=2)
    never.nothing()
    publisher.publish(topic, b"", retain=True)


# --- wills ---------------------------------------------------------------------------------


@case(versions=BOTH)
def test_a_will_is_published_when_the_connection_is_lost_not_on_disconnect(version):
    topic = unique("will")
    watcher = observer(topic, version)
    polite = Peer("sensor-1", version).connected(will=(topic, "polite"))
    polite.disconnect()
    watcher.nothing()
    lost = Peer("sensor-1", version).connected(will=(topic, "lost"))
    lost.drop()
    assert watcher.receive().payload == b"lost"


@case()
def test_a_delayed_will_waits_for_its_delay_and_is_discarded_when_the_client_returns():
    topic = unique("delayed-will")
    watcher = observer(topic)
    client_id = f"will-{uuid.uuid4().hex[:8]}"
    peer, _ = persistent("sensor-1", V5, client_id, clean=True, expiry=60,
                         will=(topic, "late"), will_delay=2)
    started = time.monotonic()
    peer.drop()
    message = watcher.receive(timeout=WAIT)
    waited = time.monotonic() - started
    assert message.payload == b"late" and waited >= 1.5, waited
    peer, _ = persistent("sensor-1", V5, client_id, clean=True, expiry=60,
                         will=(topic, "returns"), will_delay=2)
    peer.drop()
    time.sleep(0.3)
    back, present = persistent("sensor-1", V5, client_id, expiry=60)
    assert present
    watcher.nothing(within=3)
    back.disconnect()


# --- shared subscriptions ------------------------------------------------------------------


@case(versions=BOTH)
def test_a_shared_subscription_spreads_messages_across_its_members(version):
    topic = unique("shared")
    group = f"$share/g{uuid.uuid4().hex[:6]}/{topic}"
    members = [Peer("dashboard", version).connected().subscribed(group) for _ in range(2)]
    publisher = Peer("sensor-1", version).connected()
    for n in range(10):
        publisher.publish(topic, f"m{n}")
    time.sleep(QUIET)
    got = [[] for _ in members]
    for i, member in enumerate(members):
        while not member.messages.empty():
            got[i].append(member.messages.get().payload)
    assert all(got), f"every member gets some: {got}"
    assert sorted(got[0] + got[1]) == sorted(f"m{n}".encode() for n in range(10)), got


# --- MQTT 5 properties ---------------------------------------------------------------------


@case()
def test_a_topic_alias_set_by_the_client_is_resolved():
    topic = unique("alias")
    subscriber = Peer("dashboard").connected().subscribed(topic)
    publisher = Peer("sensor-1").connected()
    assert publisher.publish(topic, "set", properties=v5_properties(TopicAlias=3)) == 0
    assert publisher.publish("", "used", properties=v5_properties(TopicAlias=3)) == 0
    first, second = subscriber.receive_all(2)
    assert (first.topic, first.payload) == (topic, b"set")
    assert (second.topic, second.payload) == (topic, b"used")


@case()
def test_an_expired_message_is_not_delivered_and_the_rest_carry_the_time_left():
    topic, client_id = unique("message-expiry"), f"away-{uuid.uuid4().hex[:8]}"
    subscriber, _ = persistent("dashboard", V5, client_id, clean=True)
    subscriber.subscribed(topic)
    subscriber.disconnect()
    publisher = Peer("sensor-1").connected()
    publisher.publish(topic, "short", properties=v5_properties(MessageExpiryInterval=1))
    publisher.publish(topic, "long", properties=v5_properties(MessageExpiryInterval=60))
    time.sleep(2.2)
    subscriber, present = persistent("dashboard", V5, client_id)
    assert present
    message = subscriber.receive()
    assert message.payload == b"long", message.payload
    left = message.properties.MessageExpiryInterval
    assert 0 < left <= 58, left
    subscriber.nothing()


@case()
def test_request_response_properties_pass_through_unchanged():
    topic = unique("request")
    subscriber = Peer("dashboard").connected().subscribed(topic)
    properties = v5_properties(
        ResponseTopic=f"{topic}/reply",
        CorrelationData=b"\x00\x01request-7",
        UserProperty=[("tenant", "a"), ("trace", "t-1"), ("tenant", "b")],
        ContentType="application/json",
        PayloadFormatIndicator=1,
    )
    Peer("sensor-1").connected().publish(topic, '{"ask": 1}', properties=properties)
    received = subscriber.receive().properties
    assert received.ResponseTopic == f"{topic}/reply"
    assert received.CorrelationData == b"\x00\x01request-7"
    assert received.UserProperty == [("tenant", "a"), ("trace", "t-1"), ("tenant", "b")], \
        received.UserProperty
    assert received.ContentType == "application/json"
    assert received.PayloadFormatIndicator == 1


@case()
def test_the_clients_receive_maximum_limits_unacknowledged_messages():
    topic = unique("receive-maximum")
    subscriber = Peer("dashboard", manual_ack=True).connected(receive_maximum=2)
    subscriber.subscribed(topic)
    publisher = Peer("sensor-1").connected()
    for n in range(5):
        publisher.publish(topic, f"m{n}")
    held = subscriber.receive_all(2)
    subscriber.nothing()
    subscriber.client.ack(held[0].mid, held[0].qos)
    third = subscriber.receive()
    subscriber.nothing()
    for message in (held[1], third):
        subscriber.client.ack(message.mid, message.qos)
    rest = subscriber.receive_all(2)
    payloads = [m.payload for m in held + [third] + rest]
    assert payloads == [f"m{n}".encode() for n in range(5)], payloads


@case()
def test_a_message_over_the_clients_maximum_packet_size_is_not_sent():
    topic = unique("max-packet")
    subscriber = Peer("dashboard").connected(maximum_packet_size=256).subscribed(topic)
    publisher = Peer("sensor-1").connected()
    publisher.publish(topic, b"x" * 1000)
    publisher.publish(topic, "small")
    assert subscriber.receive().payload == b"small"
    subscriber.nothing()


@case(versions=BOTH)
def test_a_packet_over_the_brokers_maximum_packet_size_ends_the_connection(version):
    peer = Peer("sensor-1", version).connected()
    if version == V5:
        assert peer.connack[2].MaximumPacketSize == 528 * 1024, peer.connack[2]
    peer.client.publish(unique("too-big"), b"x" * (600 * 1024), qos=1)
    assert peer.disconnected.wait(WAIT), "the broker closes the connection"
    if version == V5:
        assert peer.disconnect_reason == 0x95, hex(peer.disconnect_reason)


@case()
def test_subscription_identifiers_of_every_matching_subscription_are_sent():
    topic = unique("sid")
    subscriber = Peer("dashboard").connected()
    subscriber.subscribed(f"{topic}/#", subscription_id=7)
    subscriber.subscribed(f"{topic}/+", subscription_id=9)
    subscriber.subscribed(f"{topic}/x/y", subscription_id=None)
    Peer("sensor-1").connected().publish(f"{topic}/x", "both")
    message = subscriber.receive()
    assert sorted(message.properties.SubscriptionIdentifier) == [7, 9], message.properties
    subscriber.nothing()


@case()
def test_no_local_keeps_a_clients_own_messages_from_it():
    topic = unique("no-local")
    peer = Peer("dashboard").connected().subscribed(topic, no_local=True)
    peer.publish(topic, "mine")
    peer.nothing()
    Peer("sensor-1").connected().publish(topic, "theirs")
    assert peer.receive().payload == b"theirs"


# --- topics starting with $ and authorization ----------------------------------------------


@case(versions=BOTH)
def test_dollar_topics_are_not_matched_by_wildcards(version):
    # `observer` may use `#`: a leading wildcard does not reach `$` topics, so `#` grants
    # neither publishing nor subscribing there, while it does deliver every other topic.
    peer = Peer("observer", version).connected().subscribed("#")
    topic = unique("dollar")
    peer.publish(topic, "ordinary")
    assert peer.receive().topic == topic
    refused = NOT_AUTHORIZED if version == V5 else 0x80
    assert peer.subscribe("$SYS/#") == [refused]
    code = peer.publish("$lab/x", "hidden")
    assert code == (NOT_AUTHORIZED if version == V5 else 0), hex(code)
    peer.nothing()


@case(versions=BOTH)
def test_publish_and_subscribe_outside_the_permissions_are_refused(version):
    reader = Peer("dashboard", version).connected().subscribed("devices/+/telemetry")
    sensor = Peer("sensor-1", version).connected()
    # 3.1.1 has no way to refuse a PUBLISH: it is acknowledged and dropped.
    code = sensor.publish("devices/sensor-2/telemetry", "spoofed")
    assert code == (NOT_AUTHORIZED if version == V5 else 0), hex(code)
    assert sensor.subscribe("devices/+/telemetry") == [
        NOT_AUTHORIZED if version == V5 else 0x80]
    assert sensor.publish("devices/sensor-1/telemetry", "own") == 0
    message = reader.receive()
    assert (message.topic, message.payload) == ("devices/sensor-1/telemetry", b"own")
    reader.nothing()


# --- across a restart (the Rust side restarts the broker between the phases) ---------------


RESTART_TOPIC = "lab/restart/{}"


def restart_client_id(version):
    return f"restart-keeper-{version}"


@case("before_restart", versions=BOTH)
def test_a_persistent_session_with_queued_messages_before_the_restart(version):
    topic = RESTART_TOPIC.format(version)
    subscriber, _ = persistent("dashboard", version, restart_client_id(version),
                               clean=version == V5)
    subscriber.subscribed(topic)
    subscriber.disconnect()
    publisher = Peer("sensor-1", version).connected()
    for n in range(3):
        assert publisher.publish(topic, f"before-{n}") == 0
    assert publisher.publish(f"{topic}/retained", "kept", retain=True) == 0
    publisher.disconnect()


@case("after_restart", versions=BOTH)
def test_the_persistent_session_gets_its_queued_messages_after_the_restart(version):
    topic = RESTART_TOPIC.format(version)
    subscriber, present = persistent("dashboard", version, restart_client_id(version))
    assert present, "the session survived the restart"
    payloads = [m.payload for m in subscriber.receive_all(3)]
    assert payloads == [b"before-0", b"before-1", b"before-2"], payloads
    subscriber.nothing()
    fresh = Peer("dashboard", version).connected().subscribed(f"{topic}/retained")
    assert fresh.receive().payload == b"kept"


# --- MQTT over WebSockets over TLS (`wss`) -------------------------------------------------


def wss_peer(user, version):
    peer = Peer(user, version, transport="websockets", address_variable="GRIDLINE_WSS")
    peer.client.ws_set_options(path="/mqtt")
    # Over TLS the development identity does not apply (SPEC §D): the peer proves its name
    # with the certificate the Rust side issued for it.
    peer.client.tls_set(
        ca_certs=os.environ["GRIDLINE_CA"],
        certfile=os.environ.get(f"GRIDLINE_CERT_{user.upper().replace('-', '_')}"),
        keyfile=os.environ.get(f"GRIDLINE_KEY_{user.upper().replace('-', '_')}"),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    return peer


@case("wss", versions=BOTH)
def test_a_websocket_tls_client_exchanges_messages_with_a_tcp_client(version):
    topic = unique("wss")
    over_wss = wss_peer("dashboard", version).connected().subscribed(topic)
    over_tcp = Peer("sensor-1", version).connected().subscribed(f"{topic}/back")
    assert over_tcp.publish(topic, "to wss") == 0
    assert over_wss.receive().payload == b"to wss"
    assert over_wss.publish(f"{topic}/back", "from wss") == 0
    assert over_tcp.receive().payload == b"from wss"
    over_wss.disconnect()
    over_tcp.disconnect()


# --- graceful shutdown (the Rust side sends SIGTERM once it reads CONNECTED) ---------------


@case("shutdown")
def test_a_v5_client_is_told_the_server_is_shutting_down():
    peer = Peer("dashboard").connected()
    print("CONNECTED", flush=True)
    assert peer.disconnected.wait(15), "no DISCONNECT"
    assert peer.disconnect_reason == 0x8B, hex(peer.disconnect_reason)


def main():
    phase, wanted = sys.argv[1], set(sys.argv[2:])
    failed = []
    cases = [(n, run) for n, run in CASES[phase] if not wanted or n in wanted]
    for name, run in cases:
        started = time.monotonic()
        try:
            run()
            print(f"PASS {name} ({time.monotonic() - started:.1f} s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported by name
            failed.append(name)
            print(f"FAIL {name}", flush=True)
            print("    " + traceback.format_exc().replace("\n", "\n    "), flush=True)
        while PEERS:
            peer = PEERS.pop()
            try:
                peer.client.disconnect()
                peer.client.loop_stop()
            except Exception:  # noqa: BLE001 - already gone
                pass
    print(f"{len(cases) - len(failed)} passed, {len(failed)} failed", flush=True)
    # Clients of passed cases still hold network threads; do not wait for them.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
