use super::*;
use crate::testing::*;
use k8s_openapi::jiff::Timestamp;

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap())
}

fn ready_pods(name: &str, n: i32) -> BTreeMap<String, Pods> {
    BTreeMap::from([(
        name.to_string(),
        Pods {
            desired: n,
            ready: n,
            leases: Vec::new(),
        },
    )])
}

/// A small, valid Namespace with one of each kind.
fn valid_objects() -> Objects {
    Objects {
        namespaces: vec![namespace("orders")],
        topics: vec![topic("placed", "orders")],
        event_subscriptions: vec![queue_subscription("audit", "placed")],
        clients: vec![client("sensor-1", "orders")],
        client_groups: vec![client_group(
            "sensors",
            "orders",
            "attributes.type = 'sensor'",
        )],
        topic_spaces: vec![topic_space("telemetry", "orders")],
        permission_bindings: vec![permission_binding(
            "sensors-publish",
            "orders",
            "sensors",
            "telemetry",
        )],
        secrets: vec![],
    }
}

fn change<'a>(plan: &'a Plan, kind: Kind, name: &str) -> &'a StatusChange {
    plan.changes
        .iter()
        .find(|c| c.key.kind == kind && c.key.name == name)
        .unwrap_or_else(|| panic!("no change for {kind} {name}: {:#?}", plan.changes))
}

fn condition<'a>(
    status: &'a ResourceStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#?}"))
}

/// Give every object the status the plan computed, as the API server would after the writes.
fn apply(objects: &mut Objects, plan: &Plan) {
    fn set<K: Reported>(kind: Kind, objects: &mut [K], plan: &Plan) {
        for o in objects {
            let key = ObjectKey::of(kind, o);
            if let Some(c) = plan.changes.iter().find(|c| c.key == key) {
                o.set_status(c.status.clone(), c.members.clone());
            }
        }
    }
    set(Kind::Namespace, &mut objects.namespaces, plan);
    set(Kind::Topic, &mut objects.topics, plan);
    set(
        Kind::EventSubscription,
        &mut objects.event_subscriptions,
        plan,
    );
    set(Kind::Client, &mut objects.clients, plan);
    set(Kind::ClientGroup, &mut objects.client_groups, plan);
    set(Kind::TopicSpace, &mut objects.topic_spaces, plan);
    set(
        Kind::PermissionBinding,
        &mut objects.permission_bindings,
        plan,
    );
}

#[test]
fn valid_objects_of_a_ready_namespace_are_accepted_and_ready() {
    let plan = plan(&valid_objects(), &ready_pods("orders", 1), &at(100));
    assert_eq!(plan.changes.len(), 7, "{:#?}", plan.changes);
    for change in &plan.changes {
        let accepted = condition(&change.status, "Accepted");
        assert_eq!(accepted.status, "True", "{change:#?}");
        assert_eq!(accepted.reason, "Accepted");
        assert_eq!(
            condition(&change.status, "Ready").status,
            "True",
            "{change:#?}"
        );
        assert_eq!(change.status.observed_generation, Some(1));
        assert_eq!(accepted.observed_generation, Some(1));
        assert_eq!(accepted.last_transition_time, at(100));
        // First acceptance is not worth an Event.
        assert_eq!(change.event, None);
    }
    assert_eq!(plan.evaluated[&Kind::Client], 1);
}

#[test]
fn a_namespace_whose_pods_are_not_all_ready_is_accepted_but_not_ready_nor_are_its_objects() {
    let pods = BTreeMap::from([(
        "orders".to_string(),
        Pods {
            desired: 3,
            ready: 1,
            leases: Vec::new(),
        },
    )]);
    let mut objects = valid_objects();
    objects.namespaces[0].spec.replicas = 3;
    let plan = plan(&objects, &pods, &at(100));
    let ns = &change(&plan, Kind::Namespace, "orders").status;
    assert_eq!(condition(ns, "Accepted").status, "True");
    let ready = condition(ns, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "PodsNotReady")
    );
    assert_eq!(ready.message, "1 of 3 data-plane pods ready");
    let topic = &change(&plan, Kind::Topic, "placed").status;
    assert_eq!(condition(topic, "Accepted").status, "True");
    assert_eq!(condition(topic, "Ready").reason, "NamespaceNotReady");
    let subscription = &change(&plan, Kind::EventSubscription, "audit").status;
    assert_eq!(condition(subscription, "Ready").reason, "NamespaceNotReady");
}

#[test]
fn a_namespace_without_its_statefulset_is_not_ready() {
    let plan = plan(&valid_objects(), &BTreeMap::new(), &at(100));
    let ready = condition(&change(&plan, Kind::Namespace, "orders").status, "Ready").clone();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "StatefulSetPending")
    );
}

#[test]
fn a_statefulset_not_yet_scaled_to_the_namespace_replicas_is_not_ready() {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.replicas = 2;
    // Still the old size, all ready: the new pod does not exist yet.
    let plan = plan(&objects, &ready_pods("orders", 1), &at(100));
    let ready = condition(&change(&plan, Kind::Namespace, "orders").status, "Ready").clone();
    assert_eq!(ready.status, "False");
}

#[test]
fn a_dangling_reference_is_refused_with_the_reason_and_an_event() {
    let mut objects = valid_objects();
    objects.permission_bindings = vec![permission_binding(
        "bad",
        "orders",
        "sensors",
        "missing-space",
    )];
    let plan = plan(&objects, &ready_pods("orders", 1), &at(100));
    let binding = change(&plan, Kind::PermissionBinding, "bad");
    let accepted = condition(&binding.status, "Accepted");
    assert_eq!(accepted.status, "False");
    assert_eq!(accepted.reason, "UnresolvedReference");
    assert!(
        accepted.message.contains("missing-space"),
        "{}",
        accepted.message
    );
    assert_eq!(condition(&binding.status, "Ready").reason, "NotAccepted");
    assert!(matches!(binding.event, Some(AcceptedEvent::Refused { .. })));
}

#[test]
fn an_object_whose_namespace_does_not_exist_is_refused() {
    let mut objects = valid_objects();
    objects.topics.push(topic("stray", "nowhere"));
    let plan = plan(&objects, &ready_pods("orders", 1), &at(100));
    let accepted = condition(&change(&plan, Kind::Topic, "stray").status, "Accepted").clone();
    assert_eq!(accepted.status, "False");
    assert!(
        accepted.message.contains("Namespace 'nowhere' not found"),
        "{}",
        accepted.message
    );
}

#[test]
fn an_invalid_client_group_query_is_refused_as_invalid() {
    let mut objects = valid_objects();
    objects.client_groups = vec![client_group("sensors", "orders", "attributes.type = = 'x'")];
    let plan = plan(&objects, &ready_pods("orders", 1), &at(100));
    let accepted = condition(
        &change(&plan, Kind::ClientGroup, "sensors").status,
        "Accepted",
    )
    .clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "Invalid")
    );
}

#[test]
fn once_written_an_unchanged_world_needs_no_write() {
    let mut objects = valid_objects();
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    apply(&mut objects, &first);
    let second = plan(&objects, &pods, &at(200));
    assert!(second.changes.is_empty(), "{:#?}", second.changes);
    assert_eq!(second.evaluated.values().sum::<usize>(), 7);
}

#[test]
fn a_changed_object_rewrites_only_what_changed_and_keeps_other_transition_times() {
    let mut objects = valid_objects();
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    apply(&mut objects, &first);
    // The binding's group disappears: the binding is refused, nothing else changes.
    objects.client_groups.clear();
    let second = plan(&objects, &pods, &at(200));
    let kinds: Vec<_> = second.changes.iter().map(|c| c.key.kind).collect();
    assert_eq!(kinds, [Kind::PermissionBinding], "{:#?}", second.changes);
    let status = &second.changes[0].status;
    assert_eq!(condition(status, "Accepted").last_transition_time, at(200));
    assert_eq!(condition(status, "Ready").last_transition_time, at(200));
    assert!(matches!(
        second.changes[0].event,
        Some(AcceptedEvent::Refused { .. })
    ));

    // And back: accepted again, with an Event saying so.
    apply(&mut objects, &second);
    objects.client_groups = valid_objects().client_groups;
    let third = plan(&objects, &pods, &at(300));
    // The group is new (no status yet, no Event); the binding recovers.
    assert_eq!(third.changes.len(), 2, "{:#?}", third.changes);
    assert_eq!(change(&third, Kind::ClientGroup, "sensors").event, None);
    assert_eq!(
        change(&third, Kind::PermissionBinding, "sensors-publish").event,
        Some(AcceptedEvent::Accepted)
    );
}

#[test]
fn a_new_generation_is_rewritten_with_the_transition_time_kept() {
    let mut objects = valid_objects();
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    apply(&mut objects, &first);
    objects.topics[0].metadata.generation = Some(2);
    objects.topics[0].spec.event_retention_in_days = 3;
    let plan = plan(&objects, &pods, &at(200));
    assert_eq!(plan.changes.len(), 1);
    let status = &plan.changes[0].status;
    assert_eq!(status.observed_generation, Some(2));
    let accepted = condition(status, "Accepted");
    assert_eq!(accepted.observed_generation, Some(2));
    assert_eq!(accepted.last_transition_time, at(100));
}

#[test]
fn the_development_identity_puts_a_warning_on_the_namespace_while_it_is_on() {
    let mut objects = valid_objects();
    let pods = ready_pods("orders", 1);
    objects.namespaces[0].spec.listeners.mqtt_plaintext = Some(
        serde_json::from_value(serde_json::json!({"insecureUsernameAuthentication": true}))
            .unwrap(),
    );
    let first = plan(&objects, &pods, &at(100));
    let warning = condition(
        &change(&first, Kind::Namespace, "orders").status,
        CONDITION_INSECURE,
    )
    .clone();
    assert_eq!(warning.status, "True");
    assert_eq!(warning.reason, "DevelopmentIdentityEnabled");

    apply(&mut objects, &first);
    objects.namespaces[0].spec.listeners.mqtt_plaintext = None;
    let second = plan(&objects, &pods, &at(200));
    let status = &change(&second, Kind::Namespace, "orders").status;
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.type_ != CONDITION_INSECURE)
    );
}

#[test]
fn a_subscription_is_ready_when_its_topics_namespace_is() {
    let evaluations = evaluate(&valid_objects(), &ready_pods("orders", 1), &at(100));
    let key = ObjectKey::new(Kind::EventSubscription, K8S_NS, "audit");
    assert!(evaluations[&key].ready.status);
    assert_eq!(
        evaluations[&key].ready.message,
        "served by Namespace 'orders'"
    );
}

#[test]
fn long_problem_lists_are_cut_in_the_message() {
    let errors: Vec<ObjectError> = (0..8)
        .map(|i| ObjectError {
            object: ObjectKey::new(Kind::Topic, K8S_NS, "t"),
            field: format!("spec.f{i}"),
            message: "bad".into(),
        })
        .collect();
    let condition = accepted_condition(&Err(errors));
    assert!(
        condition.message.ends_with("; and 3 more"),
        "{}",
        condition.message
    );
}

#[test]
fn a_secret_appearing_accepts_the_namespace_that_names_it() {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.sas_keys =
        Some(gridline_crds::types::namespace::SasKeysConfiguration {
            secret_name: "access-keys".into(),
        });
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    let accepted = condition(
        &change(&first, Kind::Namespace, "orders").status,
        "Accepted",
    )
    .clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "UnresolvedReference")
    );
    // Its objects are still valid, but not served by a refused Namespace.
    let topic = &change(&first, Kind::Topic, "placed").status;
    assert_eq!(condition(topic, "Accepted").status, "True");
    assert_eq!(condition(topic, "Ready").reason, "NamespaceNotReady");

    apply(&mut objects, &first);
    objects.secrets.push(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "access-keys", "namespace": K8S_NS},
            "stringData": {"key1": "k1", "key2": "k2"},
        }))
        .unwrap(),
    );
    let second = plan(&objects, &pods, &at(200));
    let ns = change(&second, Kind::Namespace, "orders");
    assert_eq!(condition(&ns.status, "Accepted").status, "True");
    assert_eq!(ns.event, Some(AcceptedEvent::Accepted));
    // Every object's Ready follows its Namespace.
    assert_eq!(second.changes.len(), 7, "{:#?}", second.changes);
}

#[test]
fn deleting_a_topic_refuses_its_subscriptions() {
    let mut objects = valid_objects();
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    apply(&mut objects, &first);
    objects.topics.clear();
    let second = plan(&objects, &pods, &at(200));
    let subscription = change(&second, Kind::EventSubscription, "audit");
    let accepted = condition(&subscription.status, "Accepted");
    assert_eq!(accepted.status, "False");
    assert!(
        accepted.message.contains("Topic 'placed' not found"),
        "{}",
        accepted.message
    );
}

fn namespace_condition(
    plan: &Plan,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    change(plan, Kind::Namespace, "orders")
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

#[test]
fn a_namespace_without_custom_domains_has_no_custom_domains_condition() {
    let plan = plan(&valid_objects(), &ready_pods("orders", 1), &at(100));
    assert_eq!(namespace_condition(&plan, CONDITION_CUSTOM_DOMAINS), None);
}

#[test]
fn custom_domains_whose_certificates_cover_them_are_reported_served() {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.custom_domains = custom_domains(&[
        ("mqtt.contoso.com", "wildcard"),
        ("http.contoso.com", "wildcard"),
    ]);
    objects
        .secrets
        .push(tls_secret("wildcard", &["*.contoso.com"]));
    let plan = plan(&objects, &ready_pods("orders", 1), &at(100));
    let domains = namespace_condition(&plan, CONDITION_CUSTOM_DOMAINS).expect("the condition");
    assert_eq!(
        (domains.status.as_str(), domains.reason.as_str()),
        ("True", "AllDomainsServed")
    );
    assert_eq!(
        domains.message,
        "all 2 custom domains are served with their own certificates"
    );
    assert_eq!(domains.observed_generation, Some(1));
}

#[test]
fn a_custom_domain_without_a_usable_certificate_is_reported_while_the_namespace_stays_accepted_and_ready()
 {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.custom_domains = custom_domains(&[
        ("mqtt.contoso.com", "mqtt-tls"),
        ("http.contoso.com", "other"),
    ]);
    objects
        .secrets
        .push(tls_secret("other", &["other.example.net"]));
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    let ns = change(&first, Kind::Namespace, "orders");
    assert_eq!(condition(&ns.status, "Accepted").status, "True");
    assert_eq!(condition(&ns.status, "Ready").status, "True");
    assert_eq!(ns.event, None);
    let domains = condition(&ns.status, CONDITION_CUSTOM_DOMAINS);
    assert_eq!(
        (domains.status.as_str(), domains.reason.as_str()),
        ("False", "CertificateMissing")
    );
    assert_eq!(
        domains.message,
        "mqtt.contoso.com: Secret 'mqtt-tls' not found; http.contoso.com: the certificate in \
         Secret 'other' does not cover http.contoso.com (it names other.example.net) (served \
         with the spec.tls certificate meanwhile)"
    );

    // The missing Secret appears: only the mismatch is left.
    apply(&mut objects, &first);
    objects
        .secrets
        .push(tls_secret("mqtt-tls", &["mqtt.contoso.com"]));
    let second = plan(&objects, &pods, &at(200));
    let domains = namespace_condition(&second, CONDITION_CUSTOM_DOMAINS).expect("the condition");
    assert_eq!(
        (domains.status.as_str(), domains.reason.as_str()),
        ("False", "CertificateMismatch")
    );
    assert!(
        domains.message.starts_with("http.contoso.com: "),
        "{}",
        domains.message
    );
    // Still False: the transition time stays.
    assert_eq!(domains.last_transition_time, at(100));
}

#[test]
fn a_refused_namespace_reports_its_custom_domains_as_not_accepted() {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.replicas = 0;
    objects.namespaces[0].spec.custom_domains = custom_domains(&[("mqtt.contoso.com", "mqtt-tls")]);
    let plan = plan(&objects, &ready_pods("orders", 1), &at(100));
    let domains = namespace_condition(&plan, CONDITION_CUSTOM_DOMAINS).expect("the condition");
    assert_eq!(
        (domains.status.as_str(), domains.reason.as_str()),
        ("False", "NotAccepted")
    );
}

#[test]
fn removing_the_custom_domains_removes_their_condition() {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.custom_domains = custom_domains(&[("mqtt.contoso.com", "mqtt-tls")]);
    let pods = ready_pods("orders", 1);
    let first = plan(&objects, &pods, &at(100));
    assert!(namespace_condition(&first, CONDITION_CUSTOM_DOMAINS).is_some());
    apply(&mut objects, &first);
    objects.namespaces[0].spec.custom_domains.clear();
    let second = plan(&objects, &pods, &at(200));
    assert_eq!(namespace_condition(&second, CONDITION_CUSTOM_DOMAINS), None);
}

mod members;
