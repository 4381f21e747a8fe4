//! Wall-clock instants as milliseconds since the Unix epoch, always passed in, never read here.

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z. The relay's clock is the authority for message times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub const fn saturating_add_millis(self, millis: u64) -> Self {
        Self(self.0.saturating_add(millis))
    }
}
