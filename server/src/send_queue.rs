//! A session's bounded queue of outgoing frames. Unlike a channel, it holds no memory while
//! empty, which matters at thousands of idle connections. Every queue also draws on one
//! [`QueueBudget`] for the whole relay.

use axum::extract::ws::Utf8Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The bytes all sessions' queues hold together. Past its limit, a queue holding more than its
/// share (an equal part of the limit, and at least `least_share`, so that a burst such as a big
/// member list does not count) takes no more: its session is a slow consumer, or, for frames
/// forwarded from others, the frame is turned away. Queues within their share still take
/// frames, so readers that keep up are not dropped for others' backlog.
#[derive(Debug)]
pub(crate) struct QueueBudget {
    limit: usize,
    least_share: usize,
    queued: AtomicUsize,
    sessions: AtomicUsize,
}

impl QueueBudget {
    pub(crate) fn new(limit: usize, least_share: usize) -> Self {
        Self {
            limit,
            least_share,
            queued: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
        }
    }

    /// Bytes queued for all sessions now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn set_sessions(&self, sessions: usize) {
        self.sessions.store(sessions, Ordering::Relaxed);
    }

    /// Whether a queue holding `held` bytes may take `more`.
    fn allows(&self, held: usize, more: usize) -> bool {
        if self.queued() + more <= self.limit {
            return true;
        }
        let share = self.limit / self.sessions.load(Ordering::Relaxed).max(1);
        held + more <= share.max(self.least_share)
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is at its frame or byte limit: its reader is too slow.
    Full,
    /// A frame that may be turned away (forwarded from another session) would take the queue
    /// past the bytes such frames may fill.
    Busy,
}

/// How much a queue may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendQueueLimits {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
    /// Bytes beyond which frames forwarded from other sessions are turned away.
    pub(crate) forwarded_bytes: usize,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct SendQueue {
    queue: Mutex<Queue>,
    limits: SendQueueLimits,
    budget: Arc<QueueBudget>,
    frame_waiting: Notify,
}

impl SendQueue {
    pub(crate) fn new(limits: SendQueueLimits, budget: Arc<QueueBudget>) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            limits,
            budget,
            frame_waiting: Notify::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame without waiting.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> Result<(), Refused> {
        self.push_within(frame, self.limits.bytes)
            .map_err(|_| Refused::Full)
    }

    /// Queues a frame forwarded from another session, unless the queue already holds
    /// [`SendQueueLimits::forwarded_bytes`] or more than its share of the relay's budget: then
    /// [`Refused::Busy`] (never [`Refused::Full`]: others cannot make it a slow consumer), and
    /// the queue is unchanged.
    pub(crate) fn push_forwarded(&self, frame: Utf8Bytes) -> Result<(), Refused> {
        match self.push_within(frame, self.limits.forwarded_bytes) {
            Err(Refused::Full) if self.queue().frames.len() < self.limits.frames => {
                Err(Refused::Busy)
            }
            outcome => outcome,
        }
    }

    fn push_within(&self, frame: Utf8Bytes, byte_limit: usize) -> Result<(), Refused> {
        let mut queue = self.queue();
        if queue.frames.len() >= self.limits.frames {
            return Err(Refused::Full);
        }
        if queue.bytes + frame.len() > byte_limit && !queue.frames.is_empty() {
            return Err(Refused::Busy);
        }
        if !queue.frames.is_empty() && !self.budget.allows(queue.bytes, frame.len()) {
            return Err(Refused::Full);
        }
        queue.bytes += frame.len();
        self.budget.queued.fetch_add(frame.len(), Ordering::Relaxed);
        queue.frames.push_back(frame);
        drop(queue);
        // Stores a permit when nobody waits, so a wake-up is never lost.
        self.frame_waiting.notify_one();
        Ok(())
    }

    /// Takes the next frame if there is one, giving memory back once the queue runs dry.
    pub(crate) fn try_pop(&self) -> Option<Utf8Bytes> {
        let mut queue = self.queue();
        let frame = queue.frames.pop_front()?;
        queue.bytes -= frame.len();
        self.budget.queued.fetch_sub(frame.len(), Ordering::Relaxed);
        if queue.frames.is_empty() {
            queue.frames = VecDeque::new();
        }
        Some(frame)
    }

    /// Drops every queued frame (the session is being closed).
    pub(crate) fn clear(&self) {
        let mut queue = self.queue();
        self.budget.queued.fetch_sub(queue.bytes, Ordering::Relaxed);
        *queue = Queue::default();
    }

    /// Waits for the next frame.
    pub(crate) async fn pop(&self) -> Utf8Bytes {
        loop {
            if let Some(frame) = self.try_pop() {
                return frame;
            }
            self.frame_waiting.notified().await;
        }
    }
}

impl Drop for SendQueue {
    /// A session that ends with frames still queued gives their bytes back.
    fn drop(&mut self) {
        let queue = self
            .queue
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.budget.queued.fetch_sub(queue.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_queue(frames: usize, bytes: usize, forwarded_bytes: usize) -> Arc<SendQueue> {
        let budget = Arc::new(QueueBudget::new(usize::MAX / 2, 0));
        send_queue_within(frames, bytes, forwarded_bytes, &budget)
    }

    fn send_queue_within(
        frames: usize,
        bytes: usize,
        forwarded_bytes: usize,
        budget: &Arc<QueueBudget>,
    ) -> Arc<SendQueue> {
        let limits = SendQueueLimits {
            frames,
            bytes,
            forwarded_bytes,
        };
        Arc::new(SendQueue::new(limits, budget.clone()))
    }

    #[tokio::test]
    async fn send_queue_is_bounded_in_frames_keeps_order_and_wakes_its_reader() {
        let send_queue = send_queue(2, 1_000, 1_000);
        assert_eq!(send_queue.push("a".into()), Ok(()));
        assert_eq!(send_queue.push("b".into()), Ok(()));
        assert_eq!(send_queue.push("c".into()), Err(Refused::Full));
        assert_eq!(send_queue.pop().await.as_str(), "a");
        assert_eq!(send_queue.pop().await.as_str(), "b");
        let reader = tokio::spawn({
            let send_queue = send_queue.clone();
            async move { send_queue.pop().await }
        });
        tokio::task::yield_now().await;
        send_queue.push("d".into()).unwrap();
        assert_eq!(reader.await.unwrap().as_str(), "d");
        assert_eq!(send_queue.queue().frames.capacity(), 0);
    }

    #[test]
    fn send_queue_is_bounded_in_bytes_and_turns_forwarded_frames_away_first() {
        let send_queue = send_queue(100, 10, 6);
        send_queue.push("abcd".into()).unwrap();
        assert_eq!(send_queue.push_forwarded("efg".into()), Err(Refused::Busy));
        send_queue.push("efghij".into()).unwrap();
        assert_eq!(send_queue.push("k".into()), Err(Refused::Full));
        assert_eq!(send_queue.try_pop().unwrap().as_str(), "abcd");
        send_queue.push("k".into()).unwrap();
        send_queue.clear();
        assert_eq!(send_queue.try_pop(), None);
        // One frame larger than the limit still goes through an empty queue.
        send_queue.push_forwarded("x".repeat(20).into()).unwrap();
    }

    #[test]
    fn past_the_relays_budget_only_queues_over_their_share_are_refused() {
        let budget = Arc::new(QueueBudget::new(100, 20));
        budget.set_sessions(4);
        let [backlog, reader] = [(); 2].map(|_| send_queue_within(100, 1_000, 1_000, &budget));
        for _ in 0..9 {
            backlog.push("x".repeat(10).into()).unwrap();
        }
        assert_eq!(budget.queued(), 90);
        backlog.push("x".repeat(10).into()).unwrap();
        // The budget is spent: the backlog (100 bytes, its share is 25) takes no more...
        assert_eq!(backlog.push("y".into()), Err(Refused::Full));
        // ...while a queue within its share still does.
        reader.push("x".repeat(10).into()).unwrap();
        reader.push("x".repeat(10).into()).unwrap();
        assert_eq!(reader.push("x".repeat(10).into()), Err(Refused::Full));
        assert_eq!(
            reader.push_forwarded("x".repeat(10).into()),
            Err(Refused::Busy),
            "a frame from another session is turned away; the reader is not dropped for it"
        );
        assert_eq!(reader.try_pop().unwrap().len(), 10);
        backlog.clear();
        assert_eq!(
            budget.queued(),
            10,
            "what is popped or cleared is given back"
        );
        backlog.push("x".repeat(50).into()).unwrap();
        drop((backlog, reader));
        assert_eq!(budget.queued(), 0, "and what a closed session left queued");
    }
}
