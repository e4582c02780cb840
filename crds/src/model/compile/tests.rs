//! The rules of `compile`, one behaviour per test. Fixtures are manifests, as users write them.

use super::*;
use crate::model::snapshot::{Delivery, HeaderValueSource};
use crate::types::permission_binding::Permission;
use serde::de::DeserializeOwned;

/// A Namespace with only development listeners (so it needs no TLS Secret), its keys, and a Topic.
const BASE: &str = r#"
apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata: {name: ns1}
spec:
  sasKeys: {secretName: ns1-keys}
  topicSpacesConfiguration: {state: Enabled}
  listeners:
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
    http: {port: 8080}
    mqttPlaintext: {port: 1883, insecureUsernameAuthentication: true}
---
apiVersion: v1
kind: Secret
metadata: {name: ns1-keys}
stringData: {key1: first-key, key2: second-key}
---
apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata: {name: orders}
spec: {namespaceRef: {name: ns1}}
"#;

fn parse<T: DeserializeOwned>(document: serde_yaml::Value) -> T {
    serde_yaml::from_value(document).expect("fixture deserializes")
}

fn objects(extra: &str) -> Objects {
    let mut objects = Objects::default();
    let text = format!("{BASE}\n---\n{extra}");
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).expect("fixture is YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"]
            .as_str()
            .expect("fixture has a kind")
            .to_string();
        match kind.as_str() {
            "Namespace" => objects.namespaces.push(parse(value)),
            "Topic" => objects.topics.push(parse(value)),
            "EventSubscription" => objects.event_subscriptions.push(parse(value)),
            "Client" => objects.clients.push(parse(value)),
            "ClientGroup" => objects.client_groups.push(parse(value)),
            "TopicSpace" => objects.topic_spaces.push(parse(value)),
            "PermissionBinding" => objects.permission_bindings.push(parse(value)),
            "Secret" => objects.secrets.push(parse(value)),
            other => panic!("unexpected kind {other}"),
        }
    }
    objects
}

use serde::Deserialize;

fn compile_yaml(extra: &str) -> (Snapshot, Vec<ObjectError>) {
    let (mut snapshots, errors) = compile_all(&objects(extra));
    let key = ("default".to_string(), "ns1".to_string());
    (snapshots.remove(&key).unwrap_or_default(), errors)
}

/// The single error, as `Kind name: field: message`.
fn only_error(extra: &str) -> String {
    let (_, errors) = compile_yaml(extra);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let error = &errors[0];
    format!(
        "{} {}: {}: {}",
        error.object.kind, error.object.name, error.field, error.message
    )
}

fn queue_subscription(name: &str, topic: &str, queue: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1\nkind: EventSubscription\nmetadata: {{name: {name}}}\nspec:\n  topicRef: {{name: {topic}}}\n  deliveryConfiguration:\n    deliveryMode: Queue\n    queue: {queue}\n"
    )
}

fn push_subscription(name: &str, url: &str, extra_properties: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1\nkind: EventSubscription\nmetadata: {{name: {name}}}\nspec:\n  topicRef: {{name: orders}}\n  deliveryConfiguration:\n    deliveryMode: Push\n    push:\n      destination:\n        properties: {{endpointUrl: '{url}'{extra_properties}}}\n"
    )
}

fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: gridline.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {{namespaceRef: {{name: ns1}}, {spec}}}\n"
    )
}

#[test]
fn a_valid_namespace_compiles_every_object_with_no_errors() {
    let extra = [
        queue_subscription(
            "audit",
            "orders",
            "{maxDeliveryCount: 3, eventTimeToLive: P1D}",
        ),
        object("Client", "sensor-1", "attributes: {type: sensor, floor: 2}"),
        object(
            "ClientGroup",
            "sensors",
            "query: \"attributes.type = 'sensor'\"",
        ),
        object(
            "TopicSpace",
            "telemetry",
            "topicTemplates: ['devices/${client.authenticationName}/#']",
        ),
        object(
            "PermissionBinding",
            "sensors-publish",
            "clientGroupName: sensors, topicSpaceName: telemetry, permission: Publisher",
        ),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(errors, vec![]);
    let namespace = snapshot.namespace.as_ref().expect("namespace compiled");
    assert_eq!(namespace.sas_keys, vec!["first-key", "second-key"]);
    assert_eq!(
        snapshot.topics["orders"].event_retention.as_secs(),
        7 * 86_400
    );
    let audit = &snapshot.subscriptions[&("orders".to_string(), "audit".to_string())];
    let Delivery::Queue(queue) = &audit.delivery else {
        panic!("queue subscription")
    };
    assert_eq!(queue.max_delivery_count, 3);
    assert_eq!(queue.receive_lock_duration.as_secs(), 60);
    assert_eq!(queue.event_time_to_live.as_secs(), 86_400);
    assert_eq!(snapshot.clients["sensor-1"].groups, vec!["sensors", "$all"]);
    assert_eq!(
        snapshot.permission_bindings["sensors-publish"].permission,
        Permission::Publisher
    );
    assert_eq!(snapshot.object_counts()[&Kind::PermissionBinding], 1);
}

#[test]
fn an_object_in_error_is_left_out_and_the_rest_still_compiles() {
    let extra = [
        object("Topic", "bad-retention", "eventRetentionInDays: 9"),
        object("Topic", "payments", "eventRetentionInDays: 2"),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(errors.len(), 1);
    assert!(!snapshot.topics.contains_key("bad-retention"));
    assert_eq!(
        snapshot.topics["payments"].event_retention.as_secs(),
        2 * 86_400
    );
    assert!(snapshot.topics.contains_key("orders"));
}

#[test]
fn retention_outside_one_to_seven_days_is_refused() {
    assert_eq!(
        only_error(&object("Topic", "t-zero", "eventRetentionInDays: 0")),
        "Topic t-zero: spec.eventRetentionInDays: 0 is out of range: must be 1-7"
    );
}

#[test]
fn names_must_be_event_grid_resource_names() {
    assert_eq!(
        only_error(&object("Topic", "ab", "eventRetentionInDays: 1")),
        "Topic ab: metadata.name: 'ab' is not a valid name: use 3-50 characters of letters, digits and '-'"
    );
}

#[test]
fn a_namespace_name_leaves_room_for_the_names_of_its_children() {
    let name = "n".repeat(44);
    let extra = format!(
        "apiVersion: gridline.dev/v1alpha1\nkind: Namespace\nmetadata: {{name: {name}}}\nspec: {{listeners: {{mqttTls: {{enabled: false, port: 8883}}, https: {{enabled: false, port: 443}}}}}}\n"
    );
    let (_, errors) = compile_all(&objects(&extra));
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{} {}: {}", e.object, e.field, e.message))
        .collect();
    assert!(
        messages.iter().any(|m| m.contains(&name)
            && m.contains("metadata.name")
            && m.contains("at most 43 characters")),
        "{messages:?}"
    );
    let mut fits = objects("");
    fits.namespaces[0].metadata.name = Some("n".repeat(43));
    let (_, errors) = compile_all(&fits);
    assert!(
        errors.iter().all(|e| e.field != "metadata.name"),
        "43 characters fit: {errors:?}"
    );
}

#[test]
fn an_object_defined_twice_is_reported() {
    let error = only_error(&object("Topic", "orders", "eventRetentionInDays: 1"));
    assert!(error.contains("defined more than once"), "{error}");
}

#[test]
fn a_namespace_ref_that_resolves_nowhere_is_reported_on_the_field() {
    let text = object("Topic", "lost", "eventRetentionInDays: 1").replace("ns1", "nowhere");
    assert_eq!(
        only_error(&text),
        "Topic lost: spec.namespaceRef.name: Namespace 'nowhere' not found in Kubernetes namespace 'default'"
    );
}

#[test]
fn a_subscription_to_a_missing_topic_is_reported() {
    assert_eq!(
        only_error(&queue_subscription("orphan", "missing", "{}")),
        "EventSubscription orphan: spec.topicRef.name: Topic 'missing' not found in Kubernetes namespace 'default'"
    );
}

#[test]
fn a_subscription_to_a_topic_in_error_says_the_topic_is_not_accepted() {
    let extra = [
        object("Topic", "broken", "eventRetentionInDays: 10"),
        queue_subscription("reader", "broken", "{}"),
    ]
    .join("---\n");
    let (_, errors) = compile_yaml(&extra);
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[1].contains("spec.topicRef.name: Topic 'broken' is not accepted"),
        "{messages:#?}"
    );
}

#[test]
fn queue_settings_outside_event_grid_ranges_are_refused() {
    let (_, errors) = compile_yaml(&queue_subscription(
        "ranges",
        "orders",
        "{receiveLockDurationInSeconds: 30, maxDeliveryCount: 11}",
    ));
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.deliveryConfiguration.queue.maxDeliveryCount",
            "spec.deliveryConfiguration.queue.receiveLockDurationInSeconds"
        ]
    );
    assert_eq!(errors[1].message, "30 is out of range: must be 60-300");
}

#[test]
fn time_to_live_must_be_at_least_a_minute_and_within_retention() {
    let short = only_error(&queue_subscription(
        "short",
        "orders",
        "{eventTimeToLive: PT30S}",
    ));
    assert!(
        short.ends_with("eventTimeToLive: PT30S is shorter than the minimum of one minute (PT1M)"),
        "{short}"
    );
    let long = only_error(&queue_subscription(
        "long",
        "orders",
        "{eventTimeToLive: P8D}",
    ));
    assert!(
        long.contains("P8D is longer than the limit of 7 days"),
        "{long}"
    );
    let malformed = only_error(&queue_subscription(
        "malformed",
        "orders",
        "{eventTimeToLive: P1W}",
    ));
    assert!(malformed.contains("unexpected unit 'W'"), "{malformed}");
}

#[test]
fn time_to_live_defaults_to_the_topic_retention() {
    let extra = [
        object("Topic", "short-lived", "eventRetentionInDays: 2"),
        queue_subscription("reader", "short-lived", "{}"),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(errors, vec![]);
    let Delivery::Queue(queue) =
        &snapshot.subscriptions[&("short-lived".to_string(), "reader".to_string())].delivery
    else {
        panic!("queue")
    };
    assert_eq!(queue.event_time_to_live.as_secs(), 2 * 86_400);
}

#[test]
fn queue_mode_with_push_settings_is_refused() {
    let text = queue_subscription("mixed", "orders", "{}").replace(
        "    queue: {}\n",
        "    push: {destination: {properties: {endpointUrl: 'https://example.com'}}}\n",
    );
    assert!(only_error(&text).ends_with(
        "spec.deliveryConfiguration: deliveryMode Queue needs 'queue' settings and no 'push' settings"
    ));
}

#[test]
fn dead_lettering_must_name_another_existing_topic() {
    let into_itself = queue_subscription(
        "loop",
        "orders",
        "{deadLetterDestinationWithResourceIdentity: {deadLetterDestination: {topicRef: {name: orders}}}}",
    );
    assert!(
        only_error(&into_itself)
            .ends_with("a subscription cannot dead-letter into the Topic it reads ('orders')")
    );
    let missing = queue_subscription(
        "lost-letters",
        "orders",
        "{deadLetterDestinationWithResourceIdentity: {deadLetterDestination: {topicRef: {name: nowhere}}}}",
    );
    assert_eq!(
        only_error(&missing),
        "EventSubscription lost-letters: spec.deliveryConfiguration.queue.deadLetterDestinationWithResourceIdentity.deadLetterDestination.topicRef.name: Topic 'nowhere' not found"
    );
    let extra = [
        object("Topic", "dead-letters", "eventRetentionInDays: 7"),
        queue_subscription(
            "with-dlq",
            "orders",
            "{deadLetterDestinationWithResourceIdentity: {deadLetterDestination: {topicRef: {name: dead-letters}}}}",
        ),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(errors, vec![]);
    let Delivery::Queue(queue) =
        &snapshot.subscriptions[&("orders".to_string(), "with-dlq".to_string())].delivery
    else {
        panic!("queue")
    };
    assert_eq!(queue.dead_letter_topic.as_deref(), Some("dead-letters"));
}

#[test]
fn plain_http_webhooks_need_the_namespace_to_allow_them() {
    let error = only_error(&push_subscription(
        "hook",
        "http://127.0.0.1:9000/events",
        "",
    ));
    assert!(
        error.contains(
            "endpointUrl: http:// endpoints need the Namespace's listeners.allowInsecureWebhooks"
        ),
        "{error}"
    );
    let (snapshot, errors) =
        compile_yaml(&push_subscription("hook", "https://example.com/events", ""));
    assert_eq!(errors, vec![]);
    let Delivery::Push(push) =
        &snapshot.subscriptions[&("orders".to_string(), "hook".to_string())].delivery
    else {
        panic!("push")
    };
    assert_eq!(push.max_events_per_batch, 1);
    assert_eq!(push.preferred_batch_size_bytes, 64 * 1024);
    assert_eq!(push.event_time_to_live.as_secs(), 7 * 86_400);
}

#[test]
fn malformed_webhook_urls_and_batch_sizes_are_refused() {
    let error = only_error(&push_subscription("hook", "https//nope", ""));
    assert!(error.contains("'https//nope' is not a URL"), "{error}");
    let error = only_error(&push_subscription(
        "hook",
        "https://example.com",
        ", maxEventsPerBatch: 5001",
    ));
    assert!(
        error.ends_with("maxEventsPerBatch: 5001 is out of range: must be 1-5000"),
        "{error}"
    );
}

#[test]
fn delivery_headers_come_from_values_secrets_or_event_attributes() {
    let mappings = ", deliveryAttributeMappings: [\
        {name: X-Static, type: Static, properties: {value: v1}},\
        {name: X-Hidden, type: Static, properties: {value: v2, isSecret: true}},\
        {name: X-From-Secret, type: Static, properties: {secretKeyRef: {name: ns1-keys, key: key1}}},\
        {name: X-Subject, type: Dynamic, properties: {sourceField: subject}}]";
    let (snapshot, errors) =
        compile_yaml(&push_subscription("hook", "https://example.com", mappings));
    assert_eq!(errors, vec![]);
    let Delivery::Push(push) =
        &snapshot.subscriptions[&("orders".to_string(), "hook".to_string())].delivery
    else {
        panic!("push")
    };
    let values: Vec<&HeaderValueSource> = push.headers.iter().map(|h| &h.value).collect();
    assert_eq!(
        values,
        vec![
            &HeaderValueSource::Static("v1".into()),
            &HeaderValueSource::Secret("v2".into()),
            &HeaderValueSource::Secret("first-key".into()),
            &HeaderValueSource::EventAttribute("subject".into()),
        ]
    );
    assert!(
        !format!("{:?}", push.headers).contains("first-key"),
        "secrets stay out of Debug"
    );
}

#[test]
fn delivery_headers_with_missing_secrets_or_conflicting_sources_are_refused() {
    let missing = ", deliveryAttributeMappings: [{name: X-A, type: Static, properties: {secretKeyRef: {name: nope, key: k}}}]";
    assert!(
        only_error(&push_subscription("hook", "https://example.com", missing)).ends_with(
            "deliveryAttributeMappings[0].properties.secretKeyRef.name: Secret 'nope' not found"
        )
    );
    let both = ", deliveryAttributeMappings: [{name: X-A, type: Static, properties: {value: v, secretKeyRef: {name: ns1-keys, key: key1}}}]";
    assert!(
        only_error(&push_subscription("hook", "https://example.com", both))
            .ends_with("a Static mapping takes exactly one of 'value' and 'secretKeyRef'")
    );
    let twice = ", deliveryAttributeMappings: [{name: X-A, type: Static, properties: {value: v}}, {name: x-a, type: Dynamic, properties: {sourceField: id}}]";
    assert!(
        only_error(&push_subscription("hook", "https://example.com", twice))
            .ends_with("header 'x-a' is mapped twice")
    );
}

#[test]
fn filter_problems_are_reported_under_filters_configuration() {
    let text = queue_subscription("filtered", "orders", "{}")
        + "  filtersConfiguration:\n    filters:\n    - {operatorType: NumberLessThan, key: data.n, values: [1, 2]}\n";
    let (_, errors) = compile_yaml(&text);
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|e| e.field.starts_with("spec.filtersConfiguration.filters[0]")),
        "{errors:#?}"
    );
}

#[test]
fn expiration_time_must_be_rfc3339() {
    let text = queue_subscription("expiring", "orders", "{}") + "  expirationTimeUtc: tomorrow\n";
    assert!(
        only_error(&text).contains("spec.expirationTimeUtc: 'tomorrow' is not an RFC 3339 time")
    );
}

#[test]
fn a_client_group_with_a_bad_query_is_refused_and_its_bindings_say_why() {
    let extra = [
        object("ClientGroup", "broken", "query: \"attributes.type = \""),
        object("TopicSpace", "everything", "topicTemplates: ['#']"),
        object(
            "PermissionBinding",
            "broken-publish",
            "clientGroupName: broken, topicSpaceName: everything, permission: Publisher",
        ),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].field, "spec.query");
    assert_eq!(errors[0].object.kind, Kind::ClientGroup);
    assert_eq!(
        errors[1].to_string(),
        "PermissionBinding default/broken-publish: spec.clientGroupName: ClientGroup 'broken' is not accepted: fix the errors reported on it first"
    );
    assert!(snapshot.topic_spaces.contains_key("everything"));
}

#[test]
fn bindings_must_name_existing_groups_and_topic_spaces_but_all_is_built_in() {
    let extra = [
        object("TopicSpace", "everything", "topicTemplates: ['#']"),
        object(
            "PermissionBinding",
            "all-subscribe",
            "clientGroupName: $all, topicSpaceName: everything, permission: Subscriber",
        ),
        object(
            "PermissionBinding",
            "missing-space",
            "clientGroupName: $all, topicSpaceName: nowhere, permission: Subscriber",
        ),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].message, "TopicSpace 'nowhere' not found");
    assert_eq!(errors[0].field, "spec.topicSpaceName");
    assert_eq!(
        snapshot.permission_bindings["all-subscribe"].client_group,
        "$all"
    );
}

#[test]
fn topic_spaces_refuse_bad_and_repeated_templates() {
    let (_, errors) = compile_yaml(&object(
        "TopicSpace",
        "bad-space",
        "topicTemplates: ['a/#/b', 'ok/+', 'ok/+']",
    ));
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["spec.topicTemplates[0]", "spec.topicTemplates[2]"]
    );
    assert!(
        errors[0].message.starts_with("'a/#/b': "),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[1].message, "template 'ok/+' is listed twice");
}

#[test]
fn authentication_names_default_to_the_object_name_and_must_be_unique() {
    let extra = [
        object("Client", "device-a", "attributes: {}"),
        object("Client", "device-b", "authenticationName: device-a"),
    ]
    .join("---\n");
    let (snapshot, errors) = compile_yaml(&extra);
    assert_eq!(
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        vec![
            "Client default/device-b: spec.authenticationName: authentication name 'device-a' is already used by Client 'device-a'"
        ]
    );
    assert_eq!(
        snapshot
            .client_by_authentication_name("device-a")
            .map(|c| c.name.as_str()),
        Some("device-a")
    );
}

#[test]
fn client_attributes_and_thumbprints_are_checked() {
    let (_, errors) = compile_yaml(&object(
        "Client",
        "device-c",
        "attributes: {'bad name': x}, clientCertificateAuthentication: {validationScheme: ThumbprintMatch, allowedThumbprints: [abc]}",
    ));
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    assert_eq!(
        messages,
        vec![
            "spec.attributes.bad name: 'bad name' is not an attribute name: use 1-32 letters, digits and '_'",
            "spec.clientCertificateAuthentication.allowedThumbprints[0]: 'abc' is not a SHA-256 thumbprint (64 hexadecimal digits)",
        ]
    );
    let error = only_error(&object(
        "Client",
        "device-d",
        "clientCertificateAuthentication: {validationScheme: ThumbprintMatch}",
    ));
    assert!(error.ends_with("validationScheme ThumbprintMatch needs at least one thumbprint"));
}

#[test]
fn thumbprints_are_normalized_to_lower_case_hex() {
    let thumbprint = "AB:".repeat(31) + "AB";
    let (snapshot, errors) = compile_yaml(&object(
        "Client",
        "device-e",
        &format!(
            "clientCertificateAuthentication: {{validationScheme: ThumbprintMatch, allowedThumbprints: ['{thumbprint}']}}"
        ),
    ));
    assert_eq!(errors, vec![]);
    assert_eq!(
        snapshot.clients["device-e"].allowed_thumbprints,
        vec!["ab".repeat(32)]
    );
}

#[test]
fn a_client_counts_in_at_most_ten_groups_plus_all() {
    let mut documents: Vec<String> = (0..12)
        .map(|i| {
            object(
                "ClientGroup",
                &format!("group-{i:02}"),
                "query: \"attributes.floor >= 1\"",
            )
        })
        .collect();
    documents.push(object("Client", "busy", "attributes: {floor: 3}"));
    let (snapshot, errors) = compile_yaml(&documents.join("---\n"));
    assert_eq!(errors, vec![]);
    let groups = &snapshot.clients["busy"].groups;
    assert_eq!(groups.len(), 11);
    assert_eq!(groups.first().map(String::as_str), Some("group-00"));
    assert_eq!(groups.last().map(String::as_str), Some("$all"));
}

#[test]
fn namespace_secrets_must_exist_and_hold_their_keys() {
    let mut objects = objects("");
    objects.secrets.clear();
    let (_, errors) = compile_all(&objects);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "spec.sasKeys.secretName");
    assert_eq!(errors[0].message, "Secret 'ns1-keys' not found");

    let mut objects = super::tests::objects("");
    objects.secrets[0].string_data = Some(Default::default());
    let (_, errors) = compile_all(&objects);
    assert_eq!(
        errors[0].message,
        "Secret 'ns1-keys' has neither 'key1' nor 'key2'"
    );
}

#[test]
fn tls_listeners_need_a_certificate_secret_with_pem_blocks() {
    let mut objects = objects(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: ns1-tls}\nstringData: {tls.crt: not-pem, tls.key: \"-----BEGIN PRIVATE KEY-----\\nx\\n-----END PRIVATE KEY-----\\n\"}\n",
    );
    let listeners = &mut objects.namespaces[0].spec.listeners;
    listeners.mqtt_tls.enabled = true;
    let (_, errors) = compile_all(&objects);
    assert_eq!(errors[0].field, "spec.tls");

    objects.namespaces[0].spec.tls = Some(crate::types::namespace::TlsConfiguration {
        secret_name: "ns1-tls".into(),
    });
    let (_, errors) = compile_all(&objects);
    assert_eq!(
        errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        vec!["key 'tls.crt' of Secret 'ns1-tls' holds no PEM CERTIFICATE block"]
    );
}

#[test]
fn two_listeners_cannot_share_a_port() {
    let mut objects = objects("");
    objects.namespaces[0]
        .spec
        .listeners
        .http
        .as_mut()
        .expect("http listener")
        .port = 1883;
    let (_, errors) = compile_all(&objects);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "spec.listeners.http.port");
    assert_eq!(
        errors[0].message,
        "port 1883 is already used by the mqttPlaintext listener"
    );
}

#[test]
fn routing_must_name_an_accepted_topic_and_enrichments_must_be_valid() {
    let mut objects = objects("");
    let mqtt = &mut objects.namespaces[0].spec.topic_spaces_configuration;
    mqtt.route_topic_ref = Some(crate::types::ObjectRef::new("nowhere"));
    mqtt.routing_enrichments = Some(
        serde_json::from_value(serde_json::json!({
            "static": [{"key": "Site", "value": "x"}, {"key": "id", "value": "y"}],
            "dynamic": [{"key": "site2", "value": "${client.name}"}, {"key": "site2", "value": "${mqtt.message.topicName}"}]
        }))
        .expect("enrichments"),
    );
    let (snapshots, errors) = compile_all(&objects);
    let key = ("default".to_string(), "ns1".to_string());
    assert!(
        snapshots[&key].namespace.is_none(),
        "a Namespace in error is left out"
    );
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let field = "spec.topicSpacesConfiguration";
    assert_eq!(
        messages,
        vec![
            format!("{field}.routeTopicRef.name: Topic 'nowhere' not found"),
            format!(
                "{field}.routingEnrichments.dynamic[0].value: '${{client.name}}' is not a dynamic enrichment value: use one of ${{client.authenticationName}}, ${{mqtt.message.topicName}}, ${{mqtt.message.responseTopic}}, ${{mqtt.message.correlationData}}, ${{client.attributes.<name>}} or ${{mqtt.message.userProperties.<name>}}"
            ),
            format!(
                "{field}.routingEnrichments.dynamic[1].key: enrichment key 'site2' is used twice"
            ),
            format!(
                "{field}.routingEnrichments.static[0].key: 'Site' is not a CloudEvents extension name: use 1-20 lowercase letters and digits"
            ),
            format!(
                "{field}.routingEnrichments.static[1].key: 'id' is a CloudEvents context attribute and cannot be an enrichment"
            ),
        ]
    );
}

#[test]
fn lifecycle_events_must_name_a_topic_and_enrichments_avoid_event_grid_reserved_names() {
    let mut objects = objects("");
    let mqtt = &mut objects.namespaces[0].spec.topic_spaces_configuration;
    mqtt.client_lifecycle_events = Some(
        serde_json::from_value(serde_json::json!({"topicRef": {"name": "nowhere"}}))
            .expect("lifecycle events"),
    );
    mqtt.routing_enrichments = Some(
        serde_json::from_value(serde_json::json!({
            "static": [
                {"key": "azspthing", "value": "x"},
                {"key": "long", "value": "v".repeat(129)}
            ],
        }))
        .expect("enrichments"),
    );
    let (_, errors) = compile_all(&objects);
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let field = "spec.topicSpacesConfiguration";
    assert_eq!(
        messages,
        vec![
            format!("{field}.clientLifecycleEvents.topicRef.name: Topic 'nowhere' not found"),
            format!(
                "{field}.routingEnrichments.static[0].key: 'azspthing' starts with 'azsp', which Event Grid reserves"
            ),
            format!(
                "{field}.routingEnrichments.static[1].value: an enrichment value is at most 128 characters"
            ),
        ]
    );
}

#[test]
fn a_lifecycle_topic_that_exists_is_compiled() {
    let mut objects = objects(&object("Topic", "lifecycle", "eventRetentionInDays: 1"));
    objects.namespaces[0]
        .spec
        .topic_spaces_configuration
        .client_lifecycle_events = Some(
        serde_json::from_value(serde_json::json!({"topicRef": {"name": "lifecycle"}}))
            .expect("lifecycle events"),
    );
    let (snapshots, errors) = compile_all(&objects);
    assert!(errors.is_empty(), "{errors:?}");
    let key = ("default".to_string(), "ns1".to_string());
    let namespace = snapshots[&key].namespace.as_ref().expect("namespace");
    assert_eq!(namespace.lifecycle_topic.as_deref(), Some("lifecycle"));
}

#[test]
fn namespace_ranges_and_storage_size_are_checked() {
    let mut objects = objects("");
    objects.namespaces[0].spec.replicas = 41;
    objects.namespaces[0].spec.storage.size = "ten gigs".into();
    objects.namespaces[0]
        .spec
        .topic_spaces_configuration
        .maximum_session_expiry_in_hours = 9;
    let (_, errors) = compile_all(&objects);
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    assert_eq!(
        messages,
        vec![
            "spec.replicas: 41 is out of range: must be 1-40",
            "spec.storage.size: 'ten gigs' is not a Kubernetes quantity (e.g. 10Gi, 500Mi)",
            "spec.topicSpacesConfiguration.maximumSessionExpiryInHours: 9 is out of range: must be 1-8",
        ]
    );
}

#[test]
fn compile_takes_one_namespace_and_ignores_objects_of_others() {
    let extra = [
        "apiVersion: gridline.dev/v1alpha1\nkind: Namespace\nmetadata: {name: ns2}\nspec: {listeners: {mqttTls: {enabled: false, port: 8883}, https: {enabled: false, port: 443}}}\n".to_string(),
        object("Topic", "other-topic", "eventRetentionInDays: 1").replace("ns1", "ns2"),
    ]
    .join("---\n");
    let objects = objects(&extra);
    let (snapshot, errors) = compile(&objects);
    assert_eq!(errors, vec![]);
    assert_eq!(
        snapshot.namespace.as_ref().map(|n| n.name.as_str()),
        Some("ns1")
    );
    assert!(!snapshot.topics.contains_key("other-topic"));
    let (snapshots, errors) = compile_all(&objects);
    assert_eq!(errors, vec![]);
    assert_eq!(snapshots.len(), 2);
    let key = ("default".to_string(), "ns2".to_string());
    assert!(snapshots[&key].topics.contains_key("other-topic"));
}

#[test]
fn jwt_issuers_are_compiled_with_their_jwks_and_a_bad_document_is_refused() {
    use crate::types::namespace::{JwtConfiguration, JwtIssuer};
    let jwks = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}"#;
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ns1-jwt}}\nstringData: {{jwks.json: '{jwks}'}}\n"
    );
    let mut objects = objects(&secret);
    objects.namespaces[0].spec.jwt = Some(JwtConfiguration {
        issuers: vec![JwtIssuer {
            issuer: "https://issuer.example.com".into(),
            audiences: vec!["ns1".into()],
            keys_secret_name: "ns1-jwt".into(),
        }],
    });
    let (snapshots, errors) = compile_all(&objects);
    assert!(errors.is_empty(), "{errors:#?}");
    let key = ("default".to_string(), "ns1".to_string());
    let issuers = &snapshots[&key].namespace.as_ref().unwrap().jwt_issuers;
    assert_eq!(issuers.len(), 1);
    assert_eq!(issuers[0].issuer, "https://issuer.example.com");
    assert_eq!(issuers[0].audiences, ["ns1"]);
    assert_eq!(issuers[0].jwks_json, jwks.as_bytes());

    objects.secrets.last_mut().unwrap().string_data =
        Some([("jwks.json".to_string(), "{\"no\": \"keys\"}".to_string())].into());
    let (_, errors) = compile_all(&objects);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, "spec.jwt.issuers[0].keysSecretName");
}

mod cluster;
