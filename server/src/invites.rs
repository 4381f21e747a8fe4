//! Minting invite tokens, from a connected owner or from the command line.

use crate::hub::now_millis;
use peerchat_shared::identity::SecretKey;
use peerchat_shared::membership::{InviteToken, Role};
use std::time::Duration;

/// Longest validity an invite may have.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Mints an invite valid for `ttl` (at most [`MAX_INVITE_TTL`]) and `max_uses` joins.
pub fn mint(relay: &SecretKey, role: Role, max_uses: u32, ttl: Duration) -> InviteToken {
    let ttl_millis = u64::try_from(ttl.min(MAX_INVITE_TTL).as_millis()).unwrap_or(u64::MAX);
    let expires_at = now_millis().saturating_add_millis(ttl_millis);
    InviteToken::mint(relay, rand::random(), role, max_uses.max(1), expires_at)
}
