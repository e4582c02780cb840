//! How taken events become requests: one event per request in structured mode
//! (`application/cloudevents+json`) when the subscription's `maxEventsPerBatch` is 1, else a
//! JSON array (`application/cloudevents-batch+json`, even for one event, so that a receiver
//! configured for batches always parses an array). A batch never exceeds `maxEventsPerBatch`
//! events nor `preferredBatchSizeInKilobytes` bytes of body, except that one event larger
//! than the size limit goes alone. Events whose dynamic delivery headers differ never share a
//! request (the headers are the request's).

pub const SINGLE_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json; charset=utf-8";

/// The subscription's batching settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl BatchLimits {
    /// Whether requests carry JSON arrays.
    pub fn is_batched(&self) -> bool {
        self.max_events > 1
    }

    pub fn content_type(&self) -> &'static str {
        if self.is_batched() {
            BATCH_CONTENT_TYPE
        } else {
            SINGLE_CONTENT_TYPE
        }
    }
}

/// The body size of a JSON array of `count` events holding `event_bytes` in all: brackets
/// and commas.
pub fn array_bytes(count: usize, event_bytes: usize) -> usize {
    event_bytes + count.saturating_sub(1) + 2
}

/// Split `events` into batches within `limits`. `size` is an event's JSON length; events with
/// different `key`s (their dynamic header values) go to different batches. Events keep their
/// order within a key.
pub fn pack<E, K: PartialEq>(
    events: Vec<E>,
    limits: BatchLimits,
    size: impl Fn(&E) -> usize,
    key: impl Fn(&E) -> K,
) -> Vec<Vec<E>> {
    // One open batch per key (few: one unless dynamic headers vary), with its byte count.
    let mut open: Vec<(K, Vec<E>, usize)> = Vec::new();
    let mut full: Vec<Vec<E>> = Vec::new();
    for event in events {
        let event_key = key(&event);
        let event_size = size(&event);
        let slot = match open.iter().position(|(k, _, _)| *k == event_key) {
            Some(slot) => slot,
            None => {
                open.push((event_key, Vec::new(), 0));
                open.len() - 1
            }
        };
        let (_, batch, bytes) = &mut open[slot];
        let fits = batch.len() < limits.max_events
            && array_bytes(batch.len() + 1, *bytes + event_size) <= limits.max_bytes;
        if !batch.is_empty() && !fits {
            full.push(std::mem::take(batch));
            *bytes = 0;
        }
        batch.push(event);
        *bytes += event_size;
    }
    full.extend(
        open.into_iter()
            .map(|(_, batch, _)| batch)
            .filter(|b| !b.is_empty()),
    );
    full
}

/// The request body: the event itself, or a JSON array of the events.
pub fn body<'a>(events: impl ExactSizeIterator<Item = &'a [u8]>, batched: bool) -> Vec<u8> {
    let events: Vec<&[u8]> = events.collect();
    if !batched && let [single] = events.as_slice() {
        return single.to_vec();
    }
    let total: usize = events.iter().map(|e| e.len()).sum();
    let mut body = Vec::with_capacity(array_bytes(events.len(), total));
    body.push(b'[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_events: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_events,
            max_bytes,
        }
    }

    fn sizes(batches: &[Vec<usize>]) -> Vec<Vec<usize>> {
        batches.to_vec()
    }

    #[test]
    fn one_event_per_request_without_batching() {
        let batches = pack(vec![10, 20, 30], limits(1, 64 << 10), |e| *e, |_| ());
        assert_eq!(sizes(&batches), [vec![10], vec![20], vec![30]]);
        assert!(!limits(1, 1024).is_batched());
        assert_eq!(limits(1, 1024).content_type(), SINGLE_CONTENT_TYPE);
        assert_eq!(limits(2, 1024).content_type(), BATCH_CONTENT_TYPE);
    }

    #[test]
    fn a_batch_stops_at_max_events() {
        let batches = pack(vec![1; 7], limits(3, 1 << 20), |e| *e, |_| ());
        let counts: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(counts, [3, 3, 1]);
    }

    #[test]
    fn a_batch_body_never_exceeds_the_size_limit() {
        // Three 40-byte events: two make an 83-byte array, three 124.
        let batches = pack(vec![40; 3], limits(10, 100), |e| *e, |_| ());
        let counts: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(counts, [2, 1]);
        let exact = pack(vec![40; 2], limits(10, 83), |e| *e, |_| ());
        assert_eq!(exact.len(), 1, "a body of exactly the limit fits");
        for batch in &batches {
            let total: usize = batch.iter().sum();
            assert!(array_bytes(batch.len(), total) <= 100);
        }
    }

    #[test]
    fn an_event_larger_than_the_size_limit_goes_alone() {
        let batches = pack(vec![10, 500, 10, 10], limits(10, 100), |e| *e, |_| ());
        assert_eq!(sizes(&batches), [vec![10], vec![500], vec![10, 10]]);
    }

    #[test]
    fn events_with_different_dynamic_headers_never_share_a_request() {
        let events = vec![("a", 1), ("b", 2), ("a", 3), ("b", 4), ("a", 5)];
        let batches = pack(events, limits(10, 1 << 20), |_| 1, |e| e.0);
        let ids: Vec<Vec<i32>> = batches
            .iter()
            .map(|b| b.iter().map(|e| e.1).collect())
            .collect();
        assert_eq!(ids, [vec![1, 3, 5], vec![2, 4]]);
    }

    #[test]
    fn bodies_are_the_event_or_an_array_of_them() {
        let one: &[u8] = br#"{"id":"1"}"#;
        let two: &[u8] = br#"{"id":"2"}"#;
        assert_eq!(body([one].into_iter(), false), one);
        assert_eq!(body([one].into_iter(), true), br#"[{"id":"1"}]"#);
        let both = body([one, two].into_iter(), true);
        assert_eq!(both, br#"[{"id":"1"},{"id":"2"}]"#);
        assert_eq!(both.len(), array_bytes(2, one.len() + two.len()));
    }
}
