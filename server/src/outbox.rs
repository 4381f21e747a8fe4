//! A session's bounded queue of outgoing frames. Unlike a channel, it holds no memory while
//! empty, which matters at thousands of idle connections.

use axum::extract::ws::Utf8Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

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
pub(crate) struct OutboxLimits {
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
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    limits: OutboxLimits,
    frame_waiting: Notify,
}

impl Outbox {
    pub(crate) fn new(limits: OutboxLimits) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            limits,
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
    /// [`OutboxLimits::forwarded_bytes`]: then [`Refused::Busy`], and the queue is unchanged.
    pub(crate) fn push_forwarded(&self, frame: Utf8Bytes) -> Result<(), Refused> {
        self.push_within(frame, self.limits.forwarded_bytes)
    }

    fn push_within(&self, frame: Utf8Bytes, byte_limit: usize) -> Result<(), Refused> {
        let mut queue = self.queue();
        if queue.frames.len() >= self.limits.frames {
            return Err(Refused::Full);
        }
        if queue.bytes + frame.len() > byte_limit && !queue.frames.is_empty() {
            return Err(Refused::Busy);
        }
        queue.bytes += frame.len();
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
        if queue.frames.is_empty() {
            queue.frames = VecDeque::new();
        }
        Some(frame)
    }

    /// Drops every queued frame (the session is being closed).
    pub(crate) fn clear(&self) {
        *self.queue() = Queue::default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(frames: usize, bytes: usize, forwarded_bytes: usize) -> std::sync::Arc<Outbox> {
        std::sync::Arc::new(Outbox::new(OutboxLimits {
            frames,
            bytes,
            forwarded_bytes,
        }))
    }

    #[tokio::test]
    async fn outbox_is_bounded_in_frames_keeps_order_and_wakes_its_reader() {
        let outbox = outbox(2, 1_000, 1_000);
        assert_eq!(outbox.push("a".into()), Ok(()));
        assert_eq!(outbox.push("b".into()), Ok(()));
        assert_eq!(outbox.push("c".into()), Err(Refused::Full));
        assert_eq!(outbox.pop().await.as_str(), "a");
        assert_eq!(outbox.pop().await.as_str(), "b");
        let reader = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.pop().await }
        });
        tokio::task::yield_now().await;
        outbox.push("d".into()).unwrap();
        assert_eq!(reader.await.unwrap().as_str(), "d");
        assert_eq!(outbox.queue().frames.capacity(), 0);
    }

    #[test]
    fn outbox_is_bounded_in_bytes_and_turns_forwarded_frames_away_first() {
        let outbox = outbox(100, 10, 6);
        outbox.push("abcd".into()).unwrap();
        assert_eq!(outbox.push_forwarded("efg".into()), Err(Refused::Busy));
        outbox.push("efghij".into()).unwrap();
        assert_eq!(outbox.push("k".into()), Err(Refused::Full));
        assert_eq!(outbox.try_pop().unwrap().as_str(), "abcd");
        outbox.push("k".into()).unwrap();
        outbox.clear();
        assert_eq!(outbox.try_pop(), None);
        // One frame larger than the limit still goes through an empty queue.
        outbox.push_forwarded("x".repeat(20).into()).unwrap();
    }
}
