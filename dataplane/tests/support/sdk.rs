//! What the official Event Grid SDK tests share: the Namespace they run against (over plain
//! HTTP, or over HTTPS with the test PKI's certificate and nothing but its CA trusted by the
//! clients), and the JavaScript SDK's `node_modules` installed from its lock file. The Python
//! SDK's venv is `support::python`.

use super::mqtt::TestPki;
use super::{Dataplane, NamespaceManifest, Workspace, documents, topic};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub const KEY: &str = "sdk-test-key-1";
pub const SECOND_KEY: &str = "sdk-test-key-2";

/// The environment variables through which Python (requests, OpenSSL) and Node add or switch
/// off certificate trust. A test that must fail without the test CA removes them, so a
/// developer's own settings cannot make it pass (or an HTTPS test pass for the wrong reason).
pub const TRUST_VARIABLES: &[&str] = &[
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PYTHONHTTPSVERIFY",
    "NODE_EXTRA_CA_CERTS",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "NODE_OPTIONS",
];

/// How the SDKs reach the data plane.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// The plain HTTP listener (local development, in-cluster traffic).
    Http,
    /// The HTTPS listener, with the Namespace's certificate from the test PKI.
    Https,
}

/// Namespace `sdk` with keys [`KEY`] and [`SECOND_KEY`]; topic `orders` with queue
/// subscriptions `all-orders` (60 s locks, dead-letters into `dead-letters`) and `big-orders`
/// (`data.total >= 1000`); topic `dead-letters` read by `dead-letter-inbox`. Over
/// [`Transport::Https`] the Namespace serves HTTPS with the certificate of Secret `sdk-tls`.
pub fn manifests(transport: Transport) -> String {
    let mut namespace = NamespaceManifest::local("sdk").sas_keys("sdk-keys");
    if transport == Transport::Https {
        namespace = namespace.tls_secret("sdk-tls").https(true);
    }
    let docs = vec![
        namespace.yaml(),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sdk-keys\nstringData:\n  key1: {KEY}\n  key2: {SECOND_KEY}\n"
        ),
        topic("orders", "sdk", 1),
        topic("dead-letters", "sdk", 1),
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: all-orders
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue:
      receiveLockDurationInSeconds: 60
      maxDeliveryCount: 10
      deadLetterDestinationWithResourceIdentity:
        deadLetterDestination: {topicRef: {name: dead-letters}}
"
        .to_string(),
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: big-orders
spec:
  topicRef: {name: orders}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {}
  filtersConfiguration:
    filters:
    - {operatorType: NumberGreaterThanOrEquals, key: data.total, value: 1000}
"
        .to_string(),
        "apiVersion: gridline.dev/v1alpha1
kind: EventSubscription
metadata:
  name: dead-letter-inbox
spec:
  topicRef: {name: dead-letters}
  deliveryConfiguration:
    deliveryMode: Queue
    queue: {}
"
        .to_string(),
    ];
    documents(&docs)
}

/// The data plane serving [`manifests`] over HTTPS (and plain HTTP, which is always on).
pub struct HttpsPlane {
    pub dataplane: Dataplane,
    /// `https://127.0.0.1:PORT`: the certificate names `127.0.0.1` and `localhost`.
    pub endpoint: String,
    /// The test CA, PEM, in a file: what a client is told to trust.
    pub ca_file: PathBuf,
    _workspace: Workspace,
}

impl HttpsPlane {
    /// Start it and wait until it is ready and its HTTPS listener is announced.
    pub async fn start() -> Self {
        let pki = TestPki::new();
        let workspace = Workspace::new();
        workspace.write("sdk.yaml", &manifests(Transport::Https));
        workspace.write("tls.yaml", &pki.secret("sdk-tls"));
        // Beside the manifests folder, not in it: a PEM file is no manifest.
        let ca_file = workspace.manifests().with_file_name("test-ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).expect("write the test CA");
        let dataplane = workspace.start(&[]);
        dataplane.wait_ready().await;
        let endpoint = format!("https://{}", dataplane.https_addr());
        Self {
            dataplane,
            endpoint,
            ca_file,
            _workspace: workspace,
        }
    }

    /// `http://127.0.0.1:PORT`, the plain listener of the same data plane.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.dataplane.addr)
    }
}

/// The folder of the JavaScript SDK tests (`package.json`, `package-lock.json`,
/// `test_sdk.mjs`).
pub fn sdk_js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk-js")
}

/// Serializes `npm ci` between the tests of one binary (threads under `cargo test`); the file
/// lock in [`node_with_sdk`] does it between processes (nextest).
static INSTALLING: Mutex<()> = Mutex::new(());

/// The JavaScript SDK tests' folder with `node_modules` installed exactly as
/// `package-lock.json` says (`npm ci`), unless it already is (as `.ci/run` leaves it). Panics
/// with a message saying what to install when `node` or `npm` is missing: CI must run this
/// test, never skip it.
pub fn node_with_sdk() -> PathBuf {
    let dir = sdk_js_dir();
    for (tool, purpose) in [
        ("node", "runs the JavaScript SDK test"),
        ("npm", "installs @azure/eventgrid-namespaces"),
    ] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` was not found: it {purpose}. Install Node.js 20 or later with npm \
             (Debian: apt-get install nodejs npm), then `npm ci --prefix dataplane/tests/sdk-js`"
        );
    }
    let _guard = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lock = std::fs::File::create(Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-js.lock"))
        .expect("create the npm lock file");
    lock.lock().expect("lock the npm lock file");
    if !installed_as_locked(&dir) {
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("run npm ci");
        assert!(
            output.status.success(),
            "npm ci in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    dir
}

/// Whether `dir/node_modules` holds exactly the packages of `dir/package-lock.json`: npm's own
/// record of what it installed (`node_modules/.package-lock.json`) lists the same packages at
/// the same versions.
fn installed_as_locked(dir: &Path) -> bool {
    let packages = |path: PathBuf| -> Option<Vec<(String, String)>> {
        let text = std::fs::read_to_string(path).ok()?;
        let lock: serde_json::Value = serde_json::from_str(&text).ok()?;
        let mut packages: Vec<(String, String)> = lock["packages"]
            .as_object()?
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, package)| {
                let version = package["version"].as_str().unwrap_or_default();
                (name.clone(), version.to_string())
            })
            .collect();
        packages.sort();
        Some(packages)
    };
    let wanted = packages(dir.join("package-lock.json")).expect("read package-lock.json");
    packages(dir.join("node_modules/.package-lock.json")).is_some_and(|had| had == wanted)
}
