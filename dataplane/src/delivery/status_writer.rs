//! In Kubernetes mode, copies each push subscription's delivery conditions
//! (`EndpointValidated`, `EndpointHealthy`, see `status.rs`) into its EventSubscription's
//! status, so that `kubectl get gsub -o yaml`, Argo CD and Flux see why an endpoint is not
//! being delivered to.
//!
//! Server-side apply under field manager `gridline-dataplane`, applying only these two
//! conditions: `status.conditions` is a list-map keyed by `type`, so the operator's
//! `Accepted` / `Ready` (applied under its own manager) are left alone, and the operator's
//! applies leave ours alone. `force`: with several pods each dispatching its own partition,
//! the latest writer's view wins (the message says which pod saw it).
//!
//! Written only when a condition's status, reason or message changed since the last write
//! (checked every [`WRITE_INTERVAL`]), so a busy endpoint costs no API traffic. Every
//! [`RECHECK_INTERVAL`] the object itself is read again and the conditions re-applied if it
//! no longer carries them (a status patch by someone else may have replaced them).

use super::status::{Condition, StatusBoard};
use crate::shutdown::StopSignal;
use chrono::SecondsFormat;
use gridline_crds::types::EventSubscription;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the board is compared with what was written.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(2);
/// How often what was written is checked against the object.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);
/// The field manager of the data plane's status writes.
pub const FIELD_MANAGER: &str = "gridline-dataplane";

/// What was last written for one subscription: (type, status, reason, message) per condition.
type Written = Vec<(String, String, String, String)>;

pub struct StatusWriter {
    /// Dynamic: the answer to a status write is not needed, and must not fail to parse
    /// (a newer CRD version's fields, say) after the write has succeeded.
    api: Api<DynamicObject>,
    board: StatusBoard,
    /// Names this pod in messages (several pods may write the same conditions).
    pod: String,
    written: BTreeMap<String, Written>,
    /// Among several pods, whether this one is the writer now (None: alone, always): one
    /// writer, so that conditions do not flap between pods' views.
    writer: Option<tokio::sync::watch::Receiver<bool>>,
}

impl StatusWriter {
    pub fn new(client: Client, k8s_namespace: &str, board: StatusBoard, pod: String) -> Self {
        StatusWriter {
            api: Api::namespaced_with(
                client,
                k8s_namespace,
                &ApiResource::erase::<EventSubscription>(&()),
            ),
            board,
            pod,
            written: BTreeMap::new(),
            writer: None,
        }
    }

    /// Write only while `writer` is true (one pod of several writes the conditions).
    pub fn only_while(mut self, writer: tokio::sync::watch::Receiver<bool>) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Write changes every [`WRITE_INTERVAL`] until `stop` turns true.
    pub async fn run(mut self, stop: StopSignal) {
        let mut interval = tokio::time::interval(WRITE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rechecked = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if self.writer.as_ref().is_some_and(|writer| !*writer.borrow()) {
                        // Not the writer: when this pod becomes it, it writes everything.
                        self.written.clear();
                        continue;
                    }
                    if rechecked.elapsed() >= RECHECK_INTERVAL {
                        // Forgetting what was written makes this pass read every object.
                        self.written.clear();
                        rechecked = tokio::time::Instant::now();
                    }
                    self.write_changes().await
                }
                () = stop.stopped() => return,
            }
        }
    }

    /// One pass: write every subscription whose conditions changed. A failed write is
    /// logged and tried again on the next pass (nothing is recorded as written).
    pub async fn write_changes(&mut self) {
        let entries = self.board.entries();
        // Subscriptions no longer served: forget them, so that one that comes back is written.
        self.written
            .retain(|name, _| entries.iter().any(|((_, sub), _)| sub == name));
        for ((topic, name), status) in entries {
            let conditions = [&status.validated, &status.healthy];
            let fingerprint: Written = conditions
                .iter()
                .map(|c| {
                    (
                        c.kind.to_string(),
                        format!("{:?}", c.status),
                        c.reason.clone(),
                        c.message.clone(),
                    )
                })
                .collect();
            if self.written.get(&name) == Some(&fingerprint) {
                continue;
            }
            match self.write(&name, &conditions).await {
                Ok(()) => {
                    tracing::debug!(topic, subscription = name, "delivery conditions written");
                    self.written.insert(name, fingerprint);
                }
                Err(error) => tracing::warn!(
                    topic,
                    subscription = name,
                    %error,
                    "cannot write the delivery conditions; trying again shortly"
                ),
            }
        }
    }

    async fn write(&self, name: &str, conditions: &[&Condition]) -> Result<(), kube::Error> {
        // observedGeneration: the generation this pod serves is the one it just read; the
        // Snapshot does not carry generations, and a status naming a stale generation is
        // exactly what kstatus should see as "not yet reconciled".
        let current = self.api.get(name).await?;
        let generation = current.metadata.generation.unwrap_or_default();
        let body = apply_body(name, conditions, generation, &self.pod);
        if carries(&current, &body) {
            return Ok(());
        }
        self.api
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
        Ok(())
    }
}

/// Whether the object already carries every condition of `body` as it is.
fn carries(current: &DynamicObject, body: &Value) -> bool {
    let held = current.data["status"]["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    body["status"]["conditions"]
        .as_array()
        .is_some_and(|wanted| wanted.iter().all(|w| held.contains(w)))
}

/// The server-side-apply body: only the two delivery conditions.
fn apply_body(name: &str, conditions: &[&Condition], generation: i64, pod: &str) -> Value {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|c| {
            json!({
                "type": c.kind,
                "status": c.status.as_str(),
                "reason": c.reason,
                "message": format!("{} (pod {pod})", c.message),
                "lastTransitionTime": c.last_transition_time.to_rfc3339_opts(SecondsFormat::Secs, true),
                "observedGeneration": generation,
            })
        })
        .collect();
    json!({
        "apiVersion": EventSubscription::api_version(&()),
        "kind": EventSubscription::kind(&()),
        "metadata": { "name": name },
        "status": { "conditions": conditions },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use tower_test::mock::{Handle, SendResponse};

    type ApiHandle = Handle<Request<Body>, Response<Body>>;

    fn writer() -> (StatusWriter, StatusBoard, ApiHandle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let board = StatusBoard::default();
        let client = Client::new(service, "gridline");
        let writer = StatusWriter::new(client, "gridline", board.clone(), "dev-gridline-0".into());
        (writer, board, handle)
    }

    fn respond_json(respond: SendResponse<Response<Body>>, status: u16, body: Value) {
        respond.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    fn subscription(generation: i64) -> Value {
        json!({
            "apiVersion": "gridline.dev/v1alpha1", "kind": "EventSubscription",
            "metadata": {"name": "hook", "namespace": "gridline", "generation": generation},
        })
    }

    async fn body_of(request: Request<Body>) -> Value {
        let bytes = request.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Answer one metadata GET and one status PATCH; return the PATCH's query and body.
    async fn expect_write(handle: &mut ApiHandle, generation: i64) -> (String, Value) {
        let (request, respond) = handle.next_request().await.expect("a GET");
        assert_eq!(request.method(), Method::GET);
        assert_eq!(
            request.uri().path(),
            "/apis/gridline.dev/v1alpha1/namespaces/gridline/eventsubscriptions/hook"
        );
        respond_json(respond, 200, subscription(generation));
        let (request, respond) = handle.next_request().await.expect("a PATCH");
        assert_eq!(request.method(), Method::PATCH);
        assert_eq!(
            request.uri().path(),
            "/apis/gridline.dev/v1alpha1/namespaces/gridline/eventsubscriptions/hook/status"
        );
        assert_eq!(
            request.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let query = request.uri().query().unwrap_or_default().to_string();
        let body = body_of(request).await;
        respond_json(respond, 200, subscription(generation));
        (query, body)
    }

    #[tokio::test]
    async fn a_changed_condition_is_applied_once_and_an_unchanged_one_not_again() {
        let (mut writer, board, mut handle) = writer();
        let status = board.track("orders", "hook", "https://example.com/".into());
        status.not_validated("OriginNotAllowed", "the endpoint allows origin 'x'");

        let pass = tokio::spawn(async move {
            writer.write_changes().await;
            writer
        });
        let (query, body) = expect_write(&mut handle, 3).await;
        let mut writer = pass.await.unwrap();
        assert!(query.contains("fieldManager=gridline-dataplane"), "{query}");
        assert!(query.contains("force=true"), "{query}");
        assert_eq!(body["kind"], "EventSubscription");
        let conditions = body["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2, "only the delivery conditions: {body}");
        assert_eq!(conditions[0]["type"], "EndpointValidated");
        assert_eq!(conditions[0]["status"], "False");
        assert_eq!(conditions[0]["reason"], "OriginNotAllowed");
        assert_eq!(conditions[0]["observedGeneration"], 3);
        assert!(
            conditions[0]["message"]
                .as_str()
                .unwrap()
                .contains("dev-gridline-0")
        );
        assert_eq!(conditions[1]["type"], "EndpointHealthy");
        assert!(body["status"].get("observedGeneration").is_none());

        // Nothing changed: no request at all (the mock would hang on an unanswered one).
        tokio::time::timeout(Duration::from_secs(5), writer.write_changes())
            .await
            .expect("an unchanged board makes no API call");

        // The endpoint starts delivering: written again.
        status.validated("the endpoint allows delivery");
        status.delivered(1);
        let pass = tokio::spawn(async move {
            writer.write_changes().await;
            writer
        });
        let (_, body) = expect_write(&mut handle, 3).await;
        pass.await.unwrap();
        assert_eq!(body["status"]["conditions"][0]["status"], "True");
        assert_eq!(body["status"]["conditions"][1]["reason"], "Delivering");
    }

    #[tokio::test]
    async fn a_failed_write_is_tried_again_on_the_next_pass() {
        let (mut writer, board, mut handle) = writer();
        board.track("orders", "hook", "https://example.com/".into());

        let pass = tokio::spawn(async move {
            writer.write_changes().await;
            writer
        });
        let (_, respond) = handle.next_request().await.expect("a GET");
        respond_json(
            respond,
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "forbidden", "reason": "Forbidden", "code": 403}),
        );
        let mut writer = pass.await.unwrap();

        let pass = tokio::spawn(async move {
            writer.write_changes().await;
        });
        let (_, body) = expect_write(&mut handle, 1).await;
        pass.await.unwrap();
        assert_eq!(body["status"]["conditions"][0]["reason"], "Validating");
    }

    #[tokio::test]
    async fn a_recheck_rewrites_only_conditions_someone_else_removed() {
        let (mut writer, board, mut handle) = writer();
        board.track("orders", "hook", "https://example.com/".into());
        let pass = tokio::spawn(async move {
            writer.write_changes().await;
            writer
        });
        let (_, written) = expect_write(&mut handle, 1).await;
        let mut writer = pass.await.unwrap();

        // The periodic recheck: the object still carries them, so nothing is patched.
        writer.written.clear();
        let pass = tokio::spawn(async move {
            writer.write_changes().await;
            writer
        });
        let (request, respond) = handle.next_request().await.expect("a GET");
        assert_eq!(request.method(), Method::GET);
        let mut carrying = subscription(1);
        carrying["status"] = written["status"].clone();
        respond_json(respond, 200, carrying);
        let mut writer = tokio::time::timeout(Duration::from_secs(5), pass)
            .await
            .expect("no PATCH after a GET that found the conditions")
            .unwrap();

        // Someone replaced the conditions: the recheck applies them again.
        writer.written.clear();
        let pass = tokio::spawn(async move {
            writer.write_changes().await;
        });
        let (_, body) = expect_write(&mut handle, 1).await;
        pass.await.unwrap();
        assert_eq!(body["status"], written["status"]);
    }
}
