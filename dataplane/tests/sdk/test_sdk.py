"""The official azure-eventgrid SDK against a Gridline data plane, unchanged.

Run by dataplane/tests/azure_sdk.rs, which starts the data plane and sets:
GRIDLINE_ENDPOINT (http://127.0.0.1:PORT, or https:// with GRIDLINE_CA), GRIDLINE_KEY,
GRIDLINE_SECOND_KEY, and for HTTPS GRIDLINE_CA: the test CA's PEM file, which every client is
told to trust with `connection_verify` (test_sdk_https.py runs these tests that way).
Topic `orders` has queue subscriptions `all-orders` (dead-letters into `dead-letters`) and
`big-orders` (filter: data.total >= 1000); `dead-letter-inbox` reads `dead-letters`.
"""

import os
import time
import unittest
import uuid

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridConsumerClient, EventGridPublisherClient

ENDPOINT = os.environ["GRIDLINE_ENDPOINT"]
KEY = os.environ["GRIDLINE_KEY"]
SECOND_KEY = os.environ["GRIDLINE_SECOND_KEY"]
MAX_WAIT = 10  # the smallest maxWaitTime Event Grid allows
CA = os.environ.get("GRIDLINE_CA")
# azure-core passes `connection_verify` to requests' `verify`: a CA bundle path, trusted alone.
TRUST = {"connection_verify": CA} if CA else {}


def publisher(key=KEY, topic="orders"):
    return EventGridPublisherClient(ENDPOINT, AzureKeyCredential(key), namespace_topic=topic, **TRUST)


def consumer(subscription, topic="orders"):
    return EventGridConsumerClient(
        ENDPOINT, AzureKeyCredential(KEY), namespace_topic=topic, subscription=subscription, **TRUST
    )


def order(total, kind="com.example.order.created"):
    return CloudEvent(
        source="/tests/sdk",
        type=kind,
        subject=f"orders/{uuid.uuid4()}",
        data={"total": total, "region": "eu-west"},
    )


def drain(client, wanted_ids, attempts=5):
    """Receive until every wanted id arrived (or attempts run out); returns id -> details."""
    seen = {}
    for _ in range(attempts):
        for details in client.receive(max_events=100, max_wait_time=MAX_WAIT):
            seen.setdefault(details.event.id, details)
        if wanted_ids <= set(seen):
            break
    return seen


class PublishAndSettle(unittest.TestCase):
    def test_a_single_event_and_a_batch_are_published_and_received_with_their_data(self):
        client = consumer("all-orders")
        single = order(5)
        batch = [order(10), order(20), order(30)]
        publisher().send(single)
        publisher().send(batch)
        ids = {single.id} | {e.id for e in batch}
        seen = drain(client, ids)
        self.assertTrue(ids <= set(seen), f"missing {ids - set(seen)}")
        first = seen[single.id]
        self.assertEqual(first.broker_properties.delivery_count, 1)
        self.assertEqual(first.event.data, {"total": 5, "region": "eu-west"})
        self.assertEqual(first.event.source, "/tests/sdk")
        self.assertEqual(first.event.type, "com.example.order.created")
        result = client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in seen.values()])
        self.assertEqual(result.failed_lock_tokens, [])
        self.assertEqual(len(result.succeeded_lock_tokens), len(seen))

    def test_an_acknowledged_event_is_not_delivered_again(self):
        client = consumer("all-orders")
        event = order(1)
        publisher().send(event)
        seen = drain(client, {event.id})
        token = seen[event.id].broker_properties.lock_token
        self.assertEqual(client.acknowledge(lock_tokens=[token]).succeeded_lock_tokens, [token])
        marker = order(2)
        publisher().send(marker)
        again = drain(client, {marker.id})
        self.assertNotIn(event.id, again)
        client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in again.values()])

    def test_a_released_event_comes_back_with_a_higher_delivery_count(self):
        client = consumer("all-orders")
        event = order(3)
        publisher().send(event)
        token = drain(client, {event.id})[event.id].broker_properties.lock_token
        result = client.release(lock_tokens=[token])
        self.assertEqual(result.succeeded_lock_tokens, [token])
        again = drain(client, {event.id})
        self.assertEqual(again[event.id].broker_properties.delivery_count, 2)
        client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in again.values()])

    def test_a_release_with_delay_hides_the_event_until_the_delay_passes(self):
        client = consumer("all-orders")
        event = order(4)
        publisher().send(event)
        token = drain(client, {event.id})[event.id].broker_properties.lock_token
        released_at = time.monotonic()
        self.assertEqual(client.release(lock_tokens=[token], release_delay=10).succeeded_lock_tokens, [token])
        marker = order(5)
        publisher().send(marker)
        early = drain(client, {marker.id})
        if time.monotonic() - released_at < 9:
            self.assertNotIn(event.id, early, "the delayed event came back before its delay")
        client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in early.values() if d.event.id != event.id])
        late = early if event.id in early else drain(client, {event.id})
        self.assertIn(event.id, late)
        self.assertGreaterEqual(time.monotonic() - released_at, 9.5)
        self.assertEqual(late[event.id].broker_properties.delivery_count, 2)
        client.acknowledge(lock_tokens=[late[event.id].broker_properties.lock_token])

    def test_a_rejected_event_is_dead_lettered_with_the_reason(self):
        client = consumer("all-orders")
        event = order(6)
        publisher().send(event)
        token = drain(client, {event.id})[event.id].broker_properties.lock_token
        self.assertEqual(client.reject(lock_tokens=[token]).succeeded_lock_tokens, [token])
        inbox = consumer("dead-letter-inbox", topic="dead-letters")
        dead = drain(inbox, {event.id})
        self.assertIn(event.id, dead)
        extensions = dead[event.id].event.extensions
        self.assertEqual(extensions.get("deadletterreason"), "Rejected")
        inbox.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in dead.values()])

    def test_a_lock_can_be_renewed_and_then_acknowledged(self):
        client = consumer("all-orders")
        event = order(7)
        publisher().send(event)
        token = drain(client, {event.id})[event.id].broker_properties.lock_token
        renewed = client.renew_locks(lock_tokens=[token])
        self.assertEqual(renewed.succeeded_lock_tokens, [token])
        self.assertEqual(renewed.failed_lock_tokens, [])
        self.assertEqual(client.acknowledge(lock_tokens=[token]).succeeded_lock_tokens, [token])

    def test_a_settled_or_unknown_token_is_reported_as_failed(self):
        client = consumer("all-orders")
        event = order(8)
        publisher().send(event)
        token = drain(client, {event.id})[event.id].broker_properties.lock_token
        client.acknowledge(lock_tokens=[token])
        result = client.acknowledge(lock_tokens=[token, "not-a-lock-token"])
        self.assertEqual(result.succeeded_lock_tokens, [])
        failed = {f.lock_token: f.error for f in result.failed_lock_tokens}
        self.assertEqual(set(failed), {token, "not-a-lock-token"})
        for error in failed.values():
            self.assertTrue(error.code, error)
            self.assertTrue(error.message, error)

    def test_filters_decide_which_subscription_receives_an_event(self):
        small, big = order(10), order(5000)
        publisher().send([small, big])
        seen = drain(consumer("big-orders"), {big.id})
        self.assertIn(big.id, seen)
        self.assertNotIn(small.id, seen)
        consumer("big-orders").acknowledge(lock_tokens=[d.broker_properties.lock_token for d in seen.values()])
        everything = drain(consumer("all-orders"), {small.id, big.id})
        consumer("all-orders").acknowledge(lock_tokens=[d.broker_properties.lock_token for d in everything.values()])

    def test_either_key_authenticates_so_keys_rotate_without_downtime(self):
        publisher(key=SECOND_KEY).send(order(9))
        everything = drain(consumer("all-orders"), set())
        consumer("all-orders").acknowledge(lock_tokens=[d.broker_properties.lock_token for d in everything.values()]) if everything else None

    def test_a_wrong_key_is_refused_with_401(self):
        with self.assertRaises(HttpResponseError) as refused:
            publisher(key="wrong-key").send(order(1))
        self.assertEqual(refused.exception.status_code, 401)

    def test_an_unknown_topic_is_404(self):
        # azure-eventgrid 4.22.1 turns a 404 on publish into a ResourceNotFoundError of its own,
        # with the service's response kept as the cause.
        with self.assertRaises(ResourceNotFoundError) as refused:
            publisher(topic="no-such-topic").send(order(1))
        cause = refused.exception.__cause__
        self.assertEqual(getattr(cause, "status_code", None), 404, repr(cause))


if __name__ == "__main__":
    unittest.main(verbosity=2)
