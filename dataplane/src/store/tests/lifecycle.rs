//! What the configuration removes stays while it may come back (a removal may be a mistake,
//! soon fixed) and is deleted once retention has passed since its newest event.

use super::*;

/// The Snapshot of `standard` without the queue subscription of `orders`.
fn without_subscription() -> Arc<Snapshot> {
    snapshot(vec![subscription(DEAD, SUB, queue(10, false))], json!({}))
}

/// The Snapshot of `standard` without the topic `orders`.
fn without_topic() -> Arc<Snapshot> {
    let mut snapshot = (*without_subscription()).clone();
    snapshot.topics.remove(TOPIC);
    Arc::new(snapshot)
}

const PAST_RETENTION: Duration = Duration::from_secs(25 * 3600);

impl EventStore {
    fn state_names(&self, topic: &str) -> Vec<String> {
        let topics = self.inner.topics.read();
        let states = topics[topic].states.read();
        states.values().map(|s| s.lock().name.clone()).collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_removed_subscription_resumes_where_it_was_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 2)).await.unwrap();
    assert_eq!(ids(&store.poll(TOPIC, SUB, 1).await), ["e-0"]);
    tokio::time::advance(LOCK / 2).await;
    store.apply_snapshot(without_subscription());
    store.publish(TOPIC, events("unseen", 1)).await.unwrap();
    store.run_retention().await.unwrap();
    store.apply_snapshot(standard(10, false));
    assert_eq!(ids(&store.poll(TOPIC, SUB, 10).await), ["e-1"]);
    tokio::time::advance(LOCK / 2).await;
    assert_eq!(
        ids(&store.poll(TOPIC, SUB, 10).await),
        ["e-0"],
        "its lock came back too"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_subscription_is_forgotten_once_retention_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &standard(10, false)).await;
        store.publish(TOPIC, events("old", 2)).await.unwrap();
        store.apply_snapshot(without_subscription());
        store.close().await;
    }
    // The retirement is journaled: a restart does not restart its clock.
    let store = open(dir.path(), &without_subscription()).await;
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    store.run_retention().await.unwrap();
    assert_eq!(store.state_names(TOPIC), [SUB], "not before retention");
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    store.run_retention().await.unwrap();
    assert!(store.state_names(TOPIC).is_empty());
    store.close().await;

    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("new", 1)).await.unwrap();
    assert_eq!(
        ids(&store.poll(TOPIC, SUB, 10).await),
        ["new-0"],
        "back as a new subscription, at the end of the log"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_topic_keeps_its_files_until_its_newest_event_is_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let topic_dir = dir.path().join("store/topics").join(TOPIC);
    let store = open(dir.path(), &standard(10, false)).await;
    store.publish(TOPIC, events("e", 2)).await.unwrap();
    store.apply_snapshot(without_topic());
    store.run_retention().await.unwrap();
    assert!(topic_dir.exists());
    store.apply_snapshot(standard(10, false));
    assert_eq!(
        ids(&store.poll(TOPIC, SUB, 10).await),
        ["e-0", "e-1"],
        "a topic that comes back has everything"
    );

    store.publish(TOPIC, events("late", 1)).await.unwrap();
    store.apply_snapshot(without_topic());
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    store.run_retention().await.unwrap();
    assert!(topic_dir.exists(), "its newest event is within retention");
    tokio::time::advance(PAST_RETENTION - Duration::from_secs(23 * 3600)).await;
    store.run_retention().await.unwrap();
    assert!(!topic_dir.exists());
    assert!(matches!(
        store.publish(TOPIC, events("x", 1)).await,
        Err(StoreError::TopicNotFound(_))
    ));

    store.apply_snapshot(standard(10, false));
    assert!(
        store.poll(TOPIC, SUB, 10).await.is_empty(),
        "a new, empty log"
    );
    store.publish(TOPIC, events("again", 1)).await.unwrap();
    assert_eq!(ids(&store.poll(TOPIC, SUB, 10).await), ["again-0"]);
}

#[tokio::test(start_paused = true)]
async fn a_topic_on_disk_that_the_configuration_never_named_is_kept_for_the_longest_retention() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &standard(10, false)).await;
        store.publish(TOPIC, events("e", 1)).await.unwrap();
        store.close().await;
    }
    let store = open(dir.path(), &without_topic()).await;
    tokio::time::advance(Duration::from_secs(6 * 24 * 3600)).await;
    store.run_retention().await.unwrap();
    assert!(dir.path().join("store/topics").join(TOPIC).exists());
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600)).await;
    store.run_retention().await.unwrap();
    assert!(!dir.path().join("store/topics").join(TOPIC).exists());
}
