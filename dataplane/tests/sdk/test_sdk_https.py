"""The official azure-eventgrid SDK over HTTPS, trusting nothing but the test CA.

Run by dataplane/tests/azure_sdk.rs, which starts the data plane with its HTTPS listener (the
certificate names 127.0.0.1 and localhost, signed by a CA made for the test) and sets
GRIDLINE_ENDPOINT (https://127.0.0.1:PORT), GRIDLINE_CA (that CA's PEM file), GRIDLINE_KEY and
GRIDLINE_SECOND_KEY, with no variable that adds trust (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, ...).

Every test of test_sdk.py runs here too (publish one event and a batch, receive, acknowledge,
release, reject, renew locks, ...), each client given `connection_verify=GRIDLINE_CA`; no test
turns verification off.
"""

import os
import unittest

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ServiceRequestError
from azure.eventgrid import EventGridConsumerClient, EventGridPublisherClient

# Imported so unittest runs them here, over HTTPS.
from test_sdk import CA, ENDPOINT, KEY, PublishAndSettle, drain, order  # noqa: F401


class TrustComesFromTheTestCa(unittest.TestCase):
    def test_the_endpoint_is_https_and_a_ca_is_given(self):
        # Without this, the suite could pass over plain HTTP by mistake.
        self.assertTrue(ENDPOINT.startswith("https://"), ENDPOINT)
        self.assertTrue(CA and os.path.isfile(CA), CA)

    def test_without_the_test_ca_the_certificate_is_refused(self):
        # The same client with the default trust (certifi's public CAs): the handshake fails
        # on the certificate, before any request is sent. No retries, so it fails at once.
        client = EventGridPublisherClient(
            ENDPOINT, AzureKeyCredential(KEY), namespace_topic="orders", retry_total=0
        )
        with self.assertRaises(ServiceRequestError) as refused:
            client.send(order(1))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(refused.exception))

    def test_requests_ca_bundle_trusts_the_test_ca_without_changing_the_code(self):
        # What a user does when they cannot change how the client is built: requests reads
        # REQUESTS_CA_BUNDLE for every request whose verify is left at True.
        os.environ["REQUESTS_CA_BUNDLE"] = CA
        try:
            event = order(12)
            EventGridPublisherClient(ENDPOINT, AzureKeyCredential(KEY), namespace_topic="orders").send(event)
            client = EventGridConsumerClient(
                ENDPOINT, AzureKeyCredential(KEY), namespace_topic="orders", subscription="all-orders"
            )
            seen = drain(client, {event.id})
            self.assertIn(event.id, seen)
            result = client.acknowledge(lock_tokens=[d.broker_properties.lock_token for d in seen.values()])
            self.assertEqual(result.failed_lock_tokens, [])
        finally:
            del os.environ["REQUESTS_CA_BUNDLE"]


if __name__ == "__main__":
    unittest.main(verbosity=2)
