"""Read MQTT-routed and client lifecycle CloudEvents with the official azure-eventgrid SDK.

Run by dataplane/tests/mqtt_routing.rs, which starts the data plane, drives MQTT clients and
sets GRIDLINE_ENDPOINT and GRIDLINE_KEY. Usage:

    test_mqtt_routing.py <topic> <subscription> <count>

receives (and acknowledges) until <count> events arrived or nothing more comes, then prints
each event as one JSON line, as the SDK parsed it: `data` bytes (from `data_base64`) are
printed as {"bytes_base64": "..."} so the Rust side can tell them from JSON data.
"""

import base64
import json
import os
import sys

from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridConsumerClient

ENDPOINT = os.environ["GRIDLINE_ENDPOINT"]
KEY = os.environ["GRIDLINE_KEY"]
MAX_WAIT = 10  # the smallest maxWaitTime Event Grid allows


def as_json(event):
    data = event.data
    if isinstance(data, (bytes, bytearray)):
        data = {"bytes_base64": base64.b64encode(data).decode()}
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": event.time.isoformat() if event.time else None,
        "datacontenttype": event.datacontenttype,
        "data": data,
        "extensions": event.extensions or {},
    }


def main():
    topic, subscription, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = EventGridConsumerClient(
        ENDPOINT, AzureKeyCredential(KEY), namespace_topic=topic, subscription=subscription
    )
    received = []
    # Each receive returns as soon as events are there; an empty one means none are coming.
    while len(received) < count:
        batch = client.receive(max_events=100, max_wait_time=MAX_WAIT)
        if not batch:
            break
        result = client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in batch])
        assert not result.failed_lock_tokens, result.failed_lock_tokens
        received.extend(d.event for d in batch)
    for event in received:
        print(json.dumps(as_json(event)))


if __name__ == "__main__":
    main()
