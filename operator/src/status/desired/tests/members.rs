//! A Namespace's members in its status, and Ready as they make it.

use super::*;

const PODS: [&str; 3] = [
    "orders-gridline-0",
    "orders-gridline-1",
    "orders-gridline-2",
];

/// Ready pods of `orders`, and a Lease per pod renewed at second 95 (live at 100), each
/// linked to the peers `links` gives it.
fn three_pods(links: impl Fn(&str) -> Vec<&'static str>) -> BTreeMap<String, Pods> {
    let renewed = Timestamp::from_second(95).unwrap();
    BTreeMap::from([(
        "orders".to_string(),
        Pods {
            desired: 3,
            ready: 3,
            leases: PODS
                .iter()
                .map(|pod| member("orders", pod, renewed, &links(pod)))
                .collect(),
        },
    )])
}

fn everyone_but(pod: &str) -> Vec<&'static str> {
    PODS.iter().copied().filter(|p| *p != pod).collect()
}

fn three_replicas() -> Objects {
    let mut objects = valid_objects();
    objects.namespaces[0].spec.replicas = 3;
    objects
}

fn namespace_change(plan: &Plan) -> &StatusChange {
    change(plan, Kind::Namespace, "orders")
}

#[test]
fn three_ready_pods_that_see_each_other_make_the_namespace_ready_and_are_listed() {
    let plan = plan(&three_replicas(), &three_pods(everyone_but), &at(100));
    let ns = namespace_change(&plan);
    let ready = condition(&ns.status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "PodsReady")
    );
    assert_eq!(
        ready.message,
        "3 of 3 data-plane pods ready, each linked to every other"
    );
    let members = ns.members.as_ref().expect("a Namespace's members");
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, PODS);
    assert_eq!(
        members[1].connected_peers,
        ["orders-gridline-0", "orders-gridline-2"]
    );
    assert_eq!(
        members[1].peer_address,
        "orders-gridline-1.orders-gridline-peers.shop.svc:7443"
    );
    // Other kinds have no members.
    assert_eq!(change(&plan, Kind::Topic, "placed").members, None);
    assert_eq!(
        condition(&change(&plan, Kind::Topic, "placed").status, "Ready").status,
        "True"
    );
}

#[test]
fn ready_pods_that_do_not_all_see_each_other_are_not_ready_and_say_who() {
    let links = |pod: &str| match pod {
        "orders-gridline-2" => vec!["orders-gridline-0"],
        other => everyone_but(other),
    };
    let plan = plan(&three_replicas(), &three_pods(links), &at(100));
    let ready = condition(&namespace_change(&plan).status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "PeersNotConnected")
    );
    assert_eq!(
        ready.message,
        "orders-gridline-2 does not see orders-gridline-1"
    );
    assert_eq!(
        condition(&change(&plan, Kind::Topic, "placed").status, "Ready").reason,
        "NamespaceNotReady"
    );
}

#[test]
fn a_pod_whose_lease_expired_is_no_member_and_keeps_the_namespace_not_ready() {
    let mut pods = three_pods(everyone_but);
    // Pod 2 stopped renewing: at 100 its Lease (renewed at 60, 15 s, 5 s grace) is out.
    pods.get_mut("orders").unwrap().leases[2] = member(
        "orders",
        "orders-gridline-2",
        Timestamp::from_second(60).unwrap(),
        &everyone_but("orders-gridline-2"),
    );
    let plan = plan(&three_replicas(), &pods, &at(100));
    let ns = namespace_change(&plan);
    assert_eq!(ns.members.as_ref().unwrap().len(), 2);
    let ready = condition(&ns.status, "Ready");
    assert_eq!(ready.reason, "MembersMissing");
    assert!(
        ready.message.ends_with("missing: orders-gridline-2"),
        "{}",
        ready.message
    );
}

#[test]
fn one_pod_without_a_lease_is_ready_with_no_members() {
    let plan = plan(&valid_objects(), &ready_pods("orders", 1), &at(100));
    let ns = namespace_change(&plan);
    assert_eq!(condition(&ns.status, "Ready").status, "True");
    assert_eq!(ns.members, Some(Vec::new()));
}

#[test]
fn members_already_in_status_are_not_written_again_but_a_change_of_links_is() {
    let mut objects = three_replicas();
    let first = plan(&objects, &three_pods(everyone_but), &at(100));
    apply(&mut objects, &first);
    let again = plan(&objects, &three_pods(everyone_but), &at(101));
    assert!(again.changes.is_empty(), "{:#?}", again.changes);

    // Pod 0 loses its link to pod 1: Ready turns False, the members are rewritten.
    let links = |pod: &str| match pod {
        "orders-gridline-0" => vec!["orders-gridline-2"],
        other => everyone_but(other),
    };
    let changed = plan(&objects, &three_pods(links), &at(102));
    assert_eq!(
        changed.changes.len(),
        7,
        "the Namespace and every object it serves"
    );
    let ns = namespace_change(&changed);
    assert_eq!(
        ns.members.as_ref().unwrap()[0].connected_peers,
        ["orders-gridline-2"]
    );
}

#[test]
fn a_change_of_members_alone_is_written() {
    let mut objects = valid_objects();
    let first = plan(&objects, &ready_pods("orders", 1), &at(100));
    apply(&mut objects, &first);
    // The single pod now holds a Lease: Ready does not move, the members do.
    let mut pods = ready_pods("orders", 1);
    pods.get_mut("orders").unwrap().leases = vec![member(
        "orders",
        "orders-gridline-0",
        Timestamp::from_second(100).unwrap(),
        &[],
    )];
    let plan = plan(&objects, &pods, &at(101));
    assert_eq!(plan.changes.len(), 1, "{:#?}", plan.changes);
    let ns = namespace_change(&plan);
    assert_eq!(ns.members.as_ref().unwrap()[0].name, "orders-gridline-0");
    // The conditions are the same, transition times and all.
    assert_eq!(condition(&ns.status, "Ready").last_transition_time, at(100));
}
