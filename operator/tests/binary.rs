//! `gridline-operator run` as a process, against a fake API server: it takes the Lease, applies
//! a Namespace's children, writes its status, serves its endpoints, and on SIGTERM releases
//! the Lease. The fake answers lists from a fixed world, holds watches open and records
//! every write.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct World {
    lease: Option<Value>,
    writes: Vec<(String, String, Value)>,
}

type Shared = Arc<Mutex<World>>;

fn namespace() -> Value {
    json!({
        "apiVersion": "gridline.dev/v1alpha1", "kind": "Namespace",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "u1", "generation": 1, "resourceVersion": "5"},
        "spec": {"listeners": {"mqttTls": {"enabled": false, "port": 8883}, "https": {"enabled": false, "port": 443}}},
    })
}

async fn api(State(world): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if method == Method::GET && query.contains("watch=true") {
        // A quiet cluster: nothing happens.
        std::future::pending::<()>().await;
    }
    let mut world = world.lock().unwrap();
    if path.contains("/leases") {
        return match method {
            Method::GET => match &world.lease {
                Some(lease) => axum::Json(lease.clone()).into_response(),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})),
                )
                    .into_response(),
            },
            _ => {
                let mut lease = body.clone();
                lease["metadata"]["resourceVersion"] = json!(format!("{}", world.writes.len() + 1));
                world.lease = Some(lease.clone());
                world.writes.push((method.to_string(), path, body));
                axum::Json(lease).into_response()
            }
        };
    }
    if method == Method::GET {
        let items = if path == "/apis/gridline.dev/v1alpha1/namespaces" {
            vec![namespace()]
        } else {
            vec![]
        };
        return axum::Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items}))
            .into_response();
    }
    world
        .writes
        .push((method.to_string(), format!("{path}?{query}"), body.clone()));
    axum::Json(body).into_response()
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_leads_applies_children_writes_status_and_releases_the_lease() {
    let world: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(api).with_state(world.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'http://{api_addr}'}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: ops}}}}]\n"
        ),
    )
    .unwrap();
    let metrics_port = free_port();
    let operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_gridline-operator"))
            .args([
                "run",
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .args(["--dataplane-image", "registry.test/gridline:e2e"])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("RUST_LOG")
            .env_remove("GRIDLINE_WATCH_NAMESPACES")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the operator binary starts"),
    );

    let writes = |filter: &dyn Fn(&(String, String, Value)) -> bool| {
        world
            .lock()
            .unwrap()
            .writes
            .iter()
            .filter(|w| filter(w))
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_for("the StatefulSet apply", || {
        !writes(&|(_, uri, _)| uri.contains("/statefulsets/orders-gridline")).is_empty()
    })
    .await;
    wait_for("the Namespace status", || {
        !writes(&|(_, uri, _)| uri.contains("/namespaces/orders/status")).is_empty()
    })
    .await;

    let lease = world.lock().unwrap().lease.clone().expect("a Lease");
    assert_eq!(
        lease["metadata"]["namespace"], "ops",
        "the kubeconfig's namespace"
    );
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .contains('_')
    );
    let sts = &writes(&|(_, uri, _)| uri.contains("/statefulsets/"))[0];
    assert_eq!(sts.0, "PATCH");
    assert!(
        sts.1.contains("fieldManager=gridline-operator"),
        "{}",
        sts.1
    );
    assert_eq!(
        sts.2["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.test/gridline:e2e"
    );
    let status = &writes(&|(_, uri, _)| uri.contains("/namespaces/orders/status"))[0];
    assert_eq!(status.2["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(status.2["status"]["conditions"][0]["status"], "True");
    // No pods: the StatefulSet never reports ready ones.
    assert_eq!(
        status.2["status"]["conditions"][1]["reason"],
        "StatefulSetPending"
    );

    let base = format!("http://127.0.0.1:{metrics_port}");
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gridline_operator_leader 1"), "{metrics}");
    assert!(
        metrics
            .contains(r#"gridline_operator_reconciles_total{kind="Namespace",result="patched"} 1"#),
        "{metrics}"
    );

    let pid = operator.0.id().to_string();
    let terminated = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(terminated.success());
    wait_for("the Lease to be released", || {
        let world = world.lock().unwrap();
        world
            .lease
            .as_ref()
            .is_some_and(|l| l["spec"].get("holderIdentity").is_none())
    })
    .await;
    let mut operator = operator;
    let status = tokio::task::spawn_blocking(move || operator.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
