//! A session's bounded queue of outgoing frames. Unlike a channel, it holds no memory while
//! empty, which matters at thousands of idle connections.

use axum::extract::ws::Utf8Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// The queue is full: its reader is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutboxFull;

#[derive(Debug)]
pub(crate) struct Outbox {
    frames: Mutex<VecDeque<Utf8Bytes>>,
    capacity: usize,
    frame_waiting: Notify,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            frames: Mutex::new(VecDeque::new()),
            capacity,
            frame_waiting: Notify::new(),
        }
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, VecDeque<Utf8Bytes>> {
        self.frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame without waiting.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> Result<(), OutboxFull> {
        let mut frames = self.frames();
        if frames.len() >= self.capacity {
            return Err(OutboxFull);
        }
        frames.push_back(frame);
        drop(frames);
        // Stores a permit when nobody waits, so a wake-up is never lost.
        self.frame_waiting.notify_one();
        Ok(())
    }

    /// Takes the next frame if there is one, giving memory back once the queue runs dry.
    pub(crate) fn try_pop(&self) -> Option<Utf8Bytes> {
        let mut frames = self.frames();
        let frame = frames.pop_front();
        if frames.is_empty() && frames.capacity() > 0 {
            frames.shrink_to(0);
        }
        frame
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

    #[tokio::test]
    async fn outbox_is_bounded_keeps_order_and_wakes_its_reader() {
        let outbox = std::sync::Arc::new(Outbox::new(2));
        assert_eq!(outbox.push("a".into()), Ok(()));
        assert_eq!(outbox.push("b".into()), Ok(()));
        assert_eq!(outbox.push("c".into()), Err(OutboxFull));
        assert_eq!(outbox.pop().await.as_str(), "a");
        assert_eq!(outbox.pop().await.as_str(), "b");
        let reader = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.pop().await }
        });
        tokio::task::yield_now().await;
        outbox.push("d".into()).unwrap();
        assert_eq!(reader.await.unwrap().as_str(), "d");
        assert_eq!(outbox.frames().capacity(), 0);
    }
}
