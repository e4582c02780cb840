// The official Event Grid namespaces SDK for JavaScript (@azure/eventgrid-namespaces),
// unchanged, against a Gridline data plane. Run by dataplane/tests/azure_sdk_js.rs:
//
//   NODE_EXTRA_CA_CERTS=ca.pem node test_sdk.mjs   every operation over HTTPS, the test CA
//                                                  being the only addition to Node's trust
//   node test_sdk.mjs refusals                     what must fail: HTTPS without the test CA,
//                                                  and http:// without allowInsecureConnection
//
// Environment: GRIDLINE_ENDPOINT (https://127.0.0.1:PORT), GRIDLINE_KEY, GRIDLINE_TOPIC and
// GRIDLINE_SUBSCRIPTION (a queue subscription of it), GRIDLINE_DEAD_LETTER_TOPIC and
// GRIDLINE_DEAD_LETTER_SUBSCRIPTION (where GRIDLINE_SUBSCRIPTION dead-letters, and a queue
// subscription of that topic); for `refusals`, GRIDLINE_HTTP_ENDPOINT (http://127.0.0.1:PORT).
// Prints one line per test and `N passed, N failed`; exits 1 if any failed.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  AzureKeyCredential,
  EventGridReceiverClient,
  EventGridSenderClient,
} from "@azure/eventgrid-namespaces";

const mode = process.argv[2] ?? "operations";
const MAX_WAIT = 10; // the smallest maxWaitTime Event Grid allows
const TEST_TIMEOUT_MS = 90_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: see the head of test_sdk.mjs for what it needs`);
    process.exit(2);
  }
  return value;
}

const endpoint = required("GRIDLINE_ENDPOINT");
const key = required("GRIDLINE_KEY");
const topic = required("GRIDLINE_TOPIC");
const subscription = required("GRIDLINE_SUBSCRIPTION");

const sender = (options = {}, at = endpoint, credential = new AzureKeyCredential(key)) =>
  new EventGridSenderClient(at, credential, topic, options);
const receiver = (topicName = topic, subscriptionName = subscription) =>
  new EventGridReceiverClient(endpoint, new AzureKeyCredential(key), topicName, subscriptionName);

function order(total) {
  return {
    id: randomUUID(),
    source: "/tests/sdk-js",
    type: "com.example.order.created",
    subject: `orders/${randomUUID()}`,
    data: { total, region: "eu-west" },
  };
}

/**
 * Receive until every wanted id arrived (or attempts run out): id -> ReceiveDetails. `raw`, if
 * given, gets id -> the event as the service sent it (JSON), extension attributes included.
 */
async function drain(client, wantedIds, { attempts = 5, raw } = {}) {
  const seen = new Map();
  const onResponse = (response) => {
    for (const item of response.parsedBody?.value ?? []) raw?.set(item.event.id, item.event);
  };
  for (let attempt = 0; attempt < attempts; attempt++) {
    const { details } = await client.receiveEvents({
      maxEvents: 100,
      maxWaitTime: MAX_WAIT,
      onResponse,
    });
    for (const received of details) {
      if (!seen.has(received.event.id)) seen.set(received.event.id, received);
    }
    if ([...wantedIds].every((id) => seen.has(id))) break;
  }
  const missing = [...wantedIds].filter((id) => !seen.has(id));
  assert.deepEqual(missing, [], "events never received");
  return seen;
}

const tokensOf = (seen) => [...seen.values()].map((d) => d.brokerProperties.lockToken);

/** Acknowledge everything in `seen` but `keep`, so tests do not see each other's events. */
async function acknowledgeOthers(client, seen, keep) {
  const others = [...seen.values()].filter((d) => d.event.id !== keep);
  if (others.length > 0) {
    await client.acknowledgeEvents(others.map((d) => d.brokerProperties.lockToken));
  }
}

const operations = {
  async "sendEvents publishes one event and an array; receiveEvents returns them with their data"() {
    const client = receiver();
    const single = order(5);
    const batch = [order(10), order(20), order(30)];
    await sender().sendEvents(single);
    await sender().sendEvents(batch);
    const seen = await drain(client, [single.id, ...batch.map((e) => e.id)]);
    const first = seen.get(single.id);
    assert.equal(first.brokerProperties.deliveryCount, 1);
    assert.deepEqual(first.event.data, { total: 5, region: "eu-west" });
    assert.equal(first.event.source, "/tests/sdk-js");
    assert.equal(first.event.type, "com.example.order.created");
    assert.equal(first.event.subject, single.subject);
    for (const event of batch) assert.deepEqual(seen.get(event.id).event.data, event.data);
    const result = await client.acknowledgeEvents(tokensOf(seen));
    assert.deepEqual(result.failedLockTokens, []);
    assert.equal(result.succeededLockTokens.length, seen.size);
  },

  async "acknowledgeEvents settles an event: it is not delivered again"() {
    const client = receiver();
    const event = order(1);
    await sender().sendEvents(event);
    const token = (await drain(client, [event.id])).get(event.id).brokerProperties.lockToken;
    const result = await client.acknowledgeEvents([token]);
    assert.deepEqual(result.succeededLockTokens, [token]);
    const marker = order(2);
    await sender().sendEvents(marker);
    const again = await drain(client, [marker.id]);
    assert.ok(!again.has(event.id), "the acknowledged event came back");
    await client.acknowledgeEvents(tokensOf(again));
  },

  async "releaseEvents hands an event back: it comes again with a higher delivery count"() {
    const client = receiver();
    const event = order(3);
    await sender().sendEvents(event);
    const first = await drain(client, [event.id]);
    await acknowledgeOthers(client, first, event.id);
    const token = first.get(event.id).brokerProperties.lockToken;
    const result = await client.releaseEvents([token]);
    assert.deepEqual(result.succeededLockTokens, [token]);
    assert.deepEqual(result.failedLockTokens, []);
    const again = await drain(client, [event.id]);
    assert.equal(again.get(event.id).brokerProperties.deliveryCount, 2);
    await client.acknowledgeEvents(tokensOf(again));
  },

  async "rejectEvents dead-letters an event with the reason Rejected"() {
    const client = receiver();
    const event = order(6);
    await sender().sendEvents(event);
    const seen = await drain(client, [event.id]);
    await acknowledgeOthers(client, seen, event.id);
    const token = seen.get(event.id).brokerProperties.lockToken;
    const result = await client.rejectEvents([token]);
    assert.deepEqual(result.succeededLockTokens, [token]);
    const inbox = receiver(
      required("GRIDLINE_DEAD_LETTER_TOPIC"),
      required("GRIDLINE_DEAD_LETTER_SUBSCRIPTION"),
    );
    // @azure/eventgrid-namespaces 1.0.0 leaves extension attributes out of the events it
    // returns, so the reason is read from the response as the service sent it.
    const sent = new Map();
    const dead = await drain(inbox, [event.id], { raw: sent });
    assert.deepEqual(dead.get(event.id).event.data, event.data);
    assert.equal(sent.get(event.id)?.deadletterreason, "Rejected", JSON.stringify(sent.get(event.id)));
    await inbox.acknowledgeEvents(tokensOf(dead));
  },

  async "renewEventLocks renews a lock, which can then be acknowledged"() {
    const client = receiver();
    const event = order(7);
    await sender().sendEvents(event);
    const seen = await drain(client, [event.id]);
    await acknowledgeOthers(client, seen, event.id);
    const token = seen.get(event.id).brokerProperties.lockToken;
    const renewed = await client.renewEventLocks([token]);
    assert.deepEqual(renewed.succeededLockTokens, [token]);
    assert.deepEqual(renewed.failedLockTokens, []);
    assert.deepEqual((await client.acknowledgeEvents([token])).succeededLockTokens, [token]);
  },

  async "a settled or unknown lock token is reported in failedLockTokens with a code"() {
    const client = receiver();
    const event = order(8);
    await sender().sendEvents(event);
    const seen = await drain(client, [event.id]);
    await client.acknowledgeEvents(tokensOf(seen));
    const token = seen.get(event.id).brokerProperties.lockToken;
    const result = await client.acknowledgeEvents([token, "not-a-lock-token"]);
    assert.deepEqual(result.succeededLockTokens, []);
    const failed = new Map(result.failedLockTokens.map((f) => [f.lockToken, f.error]));
    assert.deepEqual([...failed.keys()].sort(), [token, "not-a-lock-token"].sort());
    for (const error of failed.values()) assert.ok(error.code && error.message, JSON.stringify(error));
  },

  async "a wrong key is refused with 401"() {
    const refused = await sender({}, endpoint, new AzureKeyCredential("wrong-key"))
      .sendEvents(order(1))
      .then(() => null, (error) => error);
    assert.ok(refused, "a wrong key was accepted");
    assert.equal(refused.statusCode, 401, String(refused));
  },
};

/** The rejection of `promise`, or a failure if it resolves. */
async function rejection(promise, what) {
  const outcome = await promise.then(() => null, (error) => error);
  assert.ok(outcome, `${what} succeeded`);
  return outcome;
}

const refusals = {
  async "the test CA is not trusted in this run"() {
    // Otherwise the next test means nothing.
    assert.equal(process.env.NODE_EXTRA_CA_CERTS, undefined);
    assert.notEqual(process.env.NODE_TLS_REJECT_UNAUTHORIZED, "0");
    assert.ok(endpoint.startsWith("https://"), endpoint);
  },

  async "without the test CA trusted, the certificate is refused"() {
    const error = await rejection(
      sender({ retryOptions: { maxRetries: 0 } }).sendEvents(order(1)),
      "sendEvents to a server whose CA is not trusted",
    );
    // Node's codes for a chain it cannot verify (RestError carries the socket's code).
    const codes = [
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
      "SELF_SIGNED_CERT_IN_CHAIN",
    ];
    assert.ok(codes.includes(error.code), `unexpected error: ${error.code} ${error.message}`);
  },

  async "plain http:// is refused by the SDK without allowInsecureConnection"() {
    // Why the data plane serves HTTPS: the SDK will not send a key over plain HTTP.
    const plain = required("GRIDLINE_HTTP_ENDPOINT");
    const error = await rejection(
      sender({}, plain).sendEvents(order(1)),
      "sendEvents over http:// without the opt-in",
    );
    assert.match(error.message, /Cannot connect to http:\/\/.* while allowInsecureConnection is false/);
  },

  async "plain http:// works with allowInsecureConnection, so the refusal is the SDK's"() {
    const plain = required("GRIDLINE_HTTP_ENDPOINT");
    await sender({ allowInsecureConnection: true }, plain).sendEvents(order(1));
  },
};

const tests = { operations, refusals }[mode];
if (!tests) {
  console.error(`unknown mode ${mode}: operations (the default) or refusals`);
  process.exit(2);
}

let passed = 0;
let failed = 0;
for (const [name, test] of Object.entries(tests)) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS} ms`)), TEST_TIMEOUT_MS);
  });
  try {
    await Promise.race([test(), timeout]);
    console.log(`ok - ${name}`);
    passed++;
  } catch (error) {
    console.log(`FAILED - ${name}: ${error?.stack ?? error}`);
    failed++;
  } finally {
    clearTimeout(timer);
  }
}
console.log(`${mode}: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
