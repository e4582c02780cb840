//! The event store under damage and a full disk, through the real binary: a corrupt record
//! costs that record only (after a restart, and when a reader meets it in a sealed segment,
//! without stalling the receive), and a publish that finds the disk full is refused with a
//! 503 that says so, without harming what was stored, until space returns.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

const KEY: &str = "store-faults-key";
const API: &str = "api-version=2024-06-01";
const EVENTS: usize = 1_000;
const BATCH: usize = 100;
/// Event Grid's shortest allowed `maxWaitTime`.
const MAX_WAIT_SECONDS: u64 = 10;
/// The record header: `len u32 | crc32 u32`, then the body (see `store/record.rs`).
const HEADER: usize = 8;

fn manifests_yaml() -> String {
    documents(&[
        namespace_with_keys("faults", "faults-keys"),
        sas_keys_secret("faults-keys", KEY, "unused-second-key"),
        topic("orders", "faults", 1),
        queue_subscription("all-orders", "orders"),
    ])
}

fn event(n: usize) -> Value {
    json!({
        "specversion": "1.0",
        "id": format!("event-{n}"),
        "source": "/tests/store-faults",
        "type": "com.example.order",
        "data": {"n": n, "padding": "x".repeat(200)},
    })
}

/// Publish events `range` as one batch; the response.
async fn publish(dataplane: &Dataplane, range: std::ops::Range<usize>) -> reqwest::Response {
    let events = Value::Array(range.map(event).collect());
    dataplane
        .client()
        .post(dataplane.url(&format!("/topics/orders:publish?{API}")))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        .header(
            "Content-Type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .json(&events)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("publish")
}

async fn publish_all(dataplane: &Dataplane, range: std::ops::Range<usize>) {
    for first in range.clone().step_by(BATCH) {
        let response = publish(dataplane, first..(first + BATCH).min(range.end)).await;
        assert_eq!(response.status(), 200, "publish {first}");
    }
}

/// One receive of up to 100 events, acknowledged at once; their ids.
async fn receive_and_acknowledge(dataplane: &Dataplane, wait_seconds: u64) -> Vec<String> {
    let http = dataplane.client();
    let response = http
        .post(dataplane.url(&format!(
            "/topics/orders/eventsubscriptions/all-orders:receive?{API}&maxEvents=100&maxWaitTime={wait_seconds}"
        )))
        .header("Authorization", format!("SharedAccessKey {KEY}"))
        // Well past maxWaitTime: a receive that never answers fails here.
        .timeout(Duration::from_secs(wait_seconds + 30))
        .send()
        .await
        .expect("receive answers");
    assert_eq!(response.status(), 200, "receive");
    let body: Value = response.json().await.expect("receive body");
    let items = body["value"].as_array().expect("value").clone();
    let ids = items
        .iter()
        .map(|item| item["event"]["id"].as_str().expect("id").to_string())
        .collect();
    let tokens: Vec<&str> = items
        .iter()
        .map(|item| {
            item["brokerProperties"]["lockToken"]
                .as_str()
                .expect("token")
        })
        .collect();
    if !tokens.is_empty() {
        let response = http
            .post(dataplane.url(&format!(
                "/topics/orders/eventsubscriptions/all-orders:acknowledge?{API}"
            )))
            .header("Authorization", format!("SharedAccessKey {KEY}"))
            .json(&json!({"lockTokens": tokens}))
            .send()
            .await
            .expect("acknowledge");
        let body: Value = response.json().await.expect("acknowledge body");
        assert_eq!(body["failedLockTokens"], json!([]), "{body}");
    }
    ids
}

/// Receive and acknowledge until a receive comes back empty; every id received.
async fn drain(dataplane: &Dataplane) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let ids = receive_and_acknowledge(dataplane, MAX_WAIT_SECONDS).await;
        if ids.is_empty() {
            return all;
        }
        all.extend(ids);
    }
}

fn ids(range: impl Iterator<Item = usize>) -> BTreeSet<String> {
    range.map(|n| format!("event-{n}")).collect()
}

fn segments_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store/topics/orders/segments")
}

fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(segments_dir(data_dir))
        .expect("segments folder")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// The offsets of the records of a segment file, walking the length fields.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + HEADER <= bytes.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += HEADER + len;
    }
    assert_eq!(at, bytes.len(), "whole records");
    offsets
}

/// The value of the first sample of `family` whose labels include every one of `labels`.
async fn sample(dataplane: &Dataplane, family: &str, labels: &[&str]) -> Option<f64> {
    let (_, text) = dataplane.get("/metrics").await;
    text.lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Start a stopped workspace's data plane again and wait until it serves.
async fn restart(workspace: &Workspace) -> Dataplane {
    let dataplane = workspace.start(&[]);
    dataplane.wait_ready().await;
    dataplane
}

/// Publish `EVENTS` acknowledged events, stop the data plane (SIGTERM), change the one
/// segment's bytes with `damage`, start it again, and check that exactly the damaged event
/// is missing, with its ERROR and metric (reason `reason`).
async fn damaged_event_is_the_only_loss(damage: impl FnOnce(&mut [u8], usize), reason: &str) {
    let workspace = Workspace::new();
    workspace.write("faults.yaml", &manifests_yaml());
    let mut dataplane = restart(&workspace).await;
    publish_all(&dataplane, 0..EVENTS).await;
    assert!(dataplane.terminate().success());

    let segments = segment_files(&workspace.data_dir());
    assert_eq!(segments.len(), 1, "one active segment");
    let mut bytes = fs::read(&segments[0]).expect("segment");
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len(), EVENTS);
    let middle = EVENTS / 2;
    damage(&mut bytes, offsets[middle]);
    fs::write(&segments[0], &bytes).expect("write segment");

    let dataplane = restart(&workspace).await;
    let received: BTreeSet<String> = drain(&dataplane).await.into_iter().collect();
    let expected = ids((0..EVENTS).filter(|n| *n != middle));
    assert_eq!(received.len(), EVENTS - 1, "logs:\n{}", dataplane.logs());
    assert_eq!(received, expected);
    assert_eq!(
        sample(
            &dataplane,
            "gridline_store_corrupt_records_total",
            &["topic=\"orders\"", &format!("reason=\"{reason}\"")]
        )
        .await,
        Some(1.0)
    );
    let logs = dataplane.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("corrupt bytes in the event log"))
        .unwrap_or_else(|| panic!("no corruption line in:\n{logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!("offset={}", offsets[middle])),
        "{line}"
    );
    let length = offsets[middle + 1] - offsets[middle];
    assert!(line.contains(&format!("length={length}")), "{line}");
    assert!(line.contains("00000000000000000000.log"), "{line}");
    assert!(
        !logs.contains("cutting a torn tail"),
        "nothing is cut as a torn tail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_active_segment_costs_only_its_event_after_a_restart() {
    // A bit in the event's JSON: the record's checksum fails, its length is right.
    damaged_event_is_the_only_loss(
        |bytes, record| bytes[record + HEADER + 40] ^= 0x01,
        "checksum",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_length_field_in_the_active_segment_costs_only_its_event_after_a_restart() {
    // A bit in the length's third byte: the record now claims to run 4 MiB further, past the
    // end of the segment, which is how a torn final record looks.
    damaged_event_is_the_only_loss(|bytes, record| bytes[record + 2] ^= 0x40, "length").await;
}

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// The pid of the data plane whose command line names `data_dir`.
fn pid_serving(data_dir: &Path) -> u32 {
    let wanted = data_dir.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("gridline-dataplane") && cmdline.contains(&wanted)
            })
        })
        .expect("the data plane's process")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_sealed_segment_is_skipped_and_receive_neither_stalls_nor_spins() {
    let workspace = Workspace::new();
    workspace.write("faults.yaml", &manifests_yaml());
    let mut dataplane = restart(&workspace).await;
    publish_all(&dataplane, 0..EVENTS).await;
    assert!(dataplane.terminate().success());

    // Seal the first 600 records: split the segment where a roll would have (a segment is
    // named by the address of its first byte), without writing 64 MiB first.
    let data_dir = workspace.data_dir();
    let active = &segment_files(&data_dir)[0];
    let bytes = fs::read(active).expect("segment");
    let offsets = record_offsets(&bytes);
    let split = offsets[600];
    let mut sealed = bytes[..split].to_vec();
    fs::write(
        segments_dir(&data_dir).join(format!("{split:020}.log")),
        &bytes[split..],
    )
    .expect("second segment");
    let bad = 300;
    sealed[offsets[bad] + HEADER + 40] ^= 0x01;
    fs::write(active, &sealed).expect("sealed segment");

    let dataplane = restart(&workspace).await;
    let pid = pid_serving(&data_dir);
    let mut received = Vec::new();
    while received.len() < EVENTS - 1 {
        let started = Instant::now();
        let ids = receive_and_acknowledge(&dataplane, MAX_WAIT_SECONDS).await;
        assert!(
            started.elapsed() < Duration::from_secs(MAX_WAIT_SECONDS + 5),
            "a receive took {:?}",
            started.elapsed()
        );
        assert!(
            !ids.is_empty(),
            "events are left after {} received; logs:\n{}",
            received.len(),
            dataplane.logs()
        );
        received.extend(ids);
    }
    let received: BTreeSet<String> = received.into_iter().collect();
    assert_eq!(received, ids((0..EVENTS).filter(|n| *n != bad)));
    assert_eq!(
        sample(
            &dataplane,
            "gridline_store_corrupt_records_total",
            &["topic=\"orders\"", "reason=\"checksum\""]
        )
        .await,
        Some(1.0)
    );
    let logs = dataplane.logs();
    assert!(
        logs.lines().any(|line| line.contains("ERROR")
            && line.contains("corrupt bytes in the event log")
            && line.contains(&format!("offset={}", offsets[bad]))),
        "{logs}"
    );

    // Nothing left: the receive waits out maxWaitTime, asleep.
    let ticks_before = cpu_ticks(pid);
    let started = Instant::now();
    assert!(
        receive_and_acknowledge(&dataplane, MAX_WAIT_SECONDS)
            .await
            .is_empty()
    );
    let waited = started.elapsed();
    let cpu = Duration::from_millis((cpu_ticks(pid) - ticks_before) * 1000 / clock_ticks());
    assert!(
        waited >= Duration::from_secs(MAX_WAIT_SECONDS - 1),
        "maxWaitTime honoured: {waited:?}"
    );
    assert!(
        cpu < waited / 4,
        "the data plane used {cpu:?} of CPU while a receive waited {waited:?}"
    );
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100).max(1)
}

/// How the full-disk test runs out of space.
enum Space {
    /// The data folder is on a small tmpfs of its own (root with CAP_SYS_ADMIN): a filler file
    /// takes the rest, and writes fail with ENOSPC until it is deleted.
    Tmpfs { mount: PathBuf, filler: PathBuf },
    /// No mount allowed (a CI container): the data plane's RLIMIT_FSIZE is lowered to its
    /// segment's size (prlimit), so writes past it fail with EFBIG (SIGXFSZ is ignored, as
    /// this process ignores it and children inherit that), until the limit is raised again.
    FileSizeLimit { pid: u32 },
}

impl Space {
    /// A tmpfs at `mount`, if this machine lets us mount one.
    fn tmpfs(mount: &Path) -> Option<PathBuf> {
        fs::create_dir_all(mount).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(mount)
            .output()
            .is_ok_and(|output| output.status.success());
        mounted.then(|| mount.to_path_buf())
    }

    /// Take away the free space.
    fn fill(&self, data_dir: &Path) {
        match self {
            Space::Tmpfs { filler, .. } => {
                use std::io::Write;
                let mut file = fs::File::create(filler).expect("filler");
                let block = vec![0u8; 64 << 10];
                // Then byte by byte, so that not even a short record fits.
                while file.write_all(&block).is_ok() {}
                while file.write_all(&[0]).is_ok() {}
                let _ = file.sync_all();
            }
            Space::FileSizeLimit { pid } => {
                let segment = &segment_files(data_dir)[0];
                let size = fs::metadata(segment).expect("segment").len();
                set_file_size_limit(*pid, size);
            }
        }
    }

    /// Give the space back.
    fn free(&self) {
        match self {
            Space::Tmpfs { filler, .. } => fs::remove_file(filler).expect("remove filler"),
            Space::FileSizeLimit { pid } => set_file_size_limit(*pid, libc::RLIM_INFINITY),
        }
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        if let Space::Tmpfs { mount, .. } = self {
            // Lazily: the data plane may still be exiting.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&*mount)
                .status();
        }
    }
}

fn set_file_size_limit(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(pid).expect("pid");
    // SAFETY: prlimit with a valid rlimit and no old-value output.
    let done = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_with_retry_after_keeps_what_was_stored_and_recovers_without_a_restart()
 {
    let root = tempfile::tempdir().expect("temp dir");
    let manifests = root.path().join("manifests");
    fs::create_dir_all(&manifests).expect("manifests");
    fs::write(manifests.join("faults.yaml"), manifests_yaml()).expect("manifest");
    let tmpfs = std::env::var_os("GRIDLINE_TEST_NO_TMPFS")
        .is_none()
        .then(|| Space::tmpfs(&root.path().join("volume")))
        .flatten();
    let data_dir = match &tmpfs {
        Some(mount) => mount.join("data"),
        None => root.path().join("data"),
    };
    // Children inherit an ignored signal: the data plane gets EFBIG instead of dying.
    // SAFETY: setting a signal's disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let start = || Dataplane::start(&manifests, &data_dir, &[]);
    let mut dataplane = start();
    dataplane.wait_ready().await;
    let space = match tmpfs {
        Some(mount) => Space::Tmpfs {
            filler: mount.join("filler"),
            mount,
        },
        None => Space::FileSizeLimit {
            pid: pid_serving(&data_dir),
        },
    };
    println!(
        "running out of space with {}",
        match space {
            Space::Tmpfs { .. } => "a full tmpfs (ENOSPC)",
            Space::FileSizeLimit { .. } => "RLIMIT_FSIZE (EFBIG)",
        }
    );
    publish_all(&dataplane, 0..300).await;

    space.fill(&data_dir);
    for attempt in 0..3 {
        let response = publish(&dataplane, 300..400).await;
        assert_eq!(response.status(), 503, "attempt {attempt}");
        assert_eq!(response.headers()["retry-after"], "10");
        assert_eq!(response.headers()["x-ms-error-code"], "ServiceUnavailable");
        let body: Value = response.json().await.expect("error body");
        assert_eq!(
            body,
            json!({"error": {
                "code": "ServiceUnavailable",
                "message": "the event store's storage is full; nothing of this request was stored, retry later"
            }})
        );
    }
    assert_eq!(
        sample(
            &dataplane,
            "gridline_store_write_failures_total",
            &["topic=\"orders\"", "reason=\"disk_full\""]
        )
        .await,
        Some(3.0)
    );

    space.free();
    publish_all(&dataplane, 400..500).await;
    assert!(dataplane.terminate().success());

    // Nothing stored before was harmed, nothing of the refused publishes is there.
    let dataplane = start();
    dataplane.wait_ready().await;
    let received: BTreeSet<String> = drain(&dataplane).await.into_iter().collect();
    assert_eq!(received, ids((0..300).chain(400..500)));
    assert_eq!(
        sample(&dataplane, "gridline_store_corrupt_records_total", &[]).await,
        None,
        "no corrupt record"
    );
    assert!(!dataplane.logs().contains("cutting a torn tail"));
    drop(dataplane);
    drop(space);
}
