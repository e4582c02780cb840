//! The links that are up, by peer: read lock-free on every send (an `ArcSwap` of a map),
//! changed only when a link comes up or goes down, and mirrored into the `connected` watch.

use super::frame::{Goodbye, GoodbyeReason};
use super::metrics::LinkMetrics;
use super::sender::LinkSender;
use crate::cluster::members::MembersWatch;
use arc_swap::ArcSwap;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::watch;

pub type Connected = Arc<BTreeSet<Arc<str>>>;

/// The peers whose link is up, each with the generation of its link.
pub type Generations = Arc<std::collections::BTreeMap<Arc<str>, u64>>;

pub struct Table {
    this: Arc<str>,
    links: ArcSwap<HashMap<Arc<str>, Arc<LinkSender>>>,
    /// Serializes changes (readers never take it).
    changing: parking_lot::Mutex<()>,
    connected: watch::Sender<Connected>,
    /// The links up, each peer with its link's generation.
    generations: watch::Sender<Generations>,
    /// How many of the links' tasks run (the manager, the accept loop, dialers, handshakes).
    tasks: watch::Sender<usize>,
    pub members: MembersWatch,
    pub metrics: LinkMetrics,
}

impl Table {
    pub fn new(this: Arc<str>, members: MembersWatch, metrics: LinkMetrics) -> Table {
        Table {
            this,
            links: ArcSwap::from_pointee(HashMap::new()),
            changing: parking_lot::Mutex::new(()),
            connected: watch::channel(Arc::new(BTreeSet::new())).0,
            generations: watch::channel(Arc::default()).0,
            tasks: watch::channel(0).0,
            members,
            metrics,
        }
    }

    pub fn this(&self) -> &Arc<str> {
        &self.this
    }

    pub fn get(&self, peer: &str) -> Option<Arc<LinkSender>> {
        self.links.load().get(peer).cloned()
    }

    pub fn connected(&self) -> watch::Receiver<Connected> {
        self.connected.subscribe()
    }

    pub fn generations(&self) -> watch::Receiver<Generations> {
        self.generations.subscribe()
    }

    /// Make `link` the peer's link. A link it replaces (the peer dialled again, say after a
    /// restart this pod has not noticed yet) is closed.
    pub fn install(&self, link: &Arc<LinkSender>) {
        let _changing = self.changing.lock();
        let mut links = HashMap::clone(&self.links.load());
        if let Some(replaced) = links.insert(link.peer().clone(), link.clone()) {
            replaced.close_with(Goodbye {
                reason: GoodbyeReason::Replaced,
                message: format!("a newer link from {} replaced this one", link.peer()),
            });
        }
        self.publish(links);
    }

    /// `link` is down; the peer's entry goes only if it is still this link.
    pub fn remove(&self, link: &Arc<LinkSender>) -> bool {
        let _changing = self.changing.lock();
        let mut links = HashMap::clone(&self.links.load());
        match links.get(link.peer()) {
            Some(current) if Arc::ptr_eq(current, link) => {
                links.remove(link.peer());
                self.publish(links);
                true
            }
            _ => false,
        }
    }

    /// Close every link whose peer `keep` refuses, with `goodbye`.
    pub fn close_where(&self, keep: impl Fn(&str) -> bool, goodbye: impl Fn(&str) -> Goodbye) {
        let _changing = self.changing.lock();
        for (peer, link) in self.links.load().iter() {
            if !keep(peer) {
                link.close_with(goodbye(peer));
            }
        }
    }

    /// Count a task until the guard is dropped (made before the task is spawned, so that no
    /// gap shows zero tasks while one is about to start).
    pub fn task(self: &Arc<Self>) -> TaskGuard {
        self.tasks.send_modify(|tasks| *tasks += 1);
        TaskGuard(self.clone())
    }

    /// Resolves when no task of the links runs any more.
    pub async fn tasks_ended(&self) {
        let mut tasks = self.tasks.subscribe();
        let _ = tasks.wait_for(|tasks| *tasks == 0).await;
    }

    fn publish(&self, links: HashMap<Arc<str>, Arc<LinkSender>>) {
        let connected: BTreeSet<Arc<str>> = links.keys().cloned().collect();
        let generations: std::collections::BTreeMap<Arc<str>, u64> = links
            .iter()
            .map(|(peer, link)| (peer.clone(), link.generation()))
            .collect();
        self.links.store(Arc::new(links));
        self.generations.send_if_modified(|current| {
            if **current == generations {
                return false;
            }
            *current = Arc::new(generations);
            true
        });
        self.connected.send_if_modified(|current| {
            if **current == connected {
                return false;
            }
            *current = Arc::new(connected);
            true
        });
    }
}

/// One running task of the links; see [`Table::task`].
pub struct TaskGuard(Arc<Table>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks.send_modify(|tasks| *tasks -= 1);
    }
}
