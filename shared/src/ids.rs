//! Sortable ids: ULIDs minted by the relay from its clock, monotonic within one relay process.
//!
//! A ULID is 48 bits of Unix milliseconds followed by 80 random bits. Its 26-character Crockford
//! base32 text and its 16 big-endian bytes both sort in time order, so clients key their stores
//! by it and every client agrees on the order of history.

use crate::time::UnixMillis;

/// The id of a stamped message. The relay's time for the message
/// is the id's timestamp: there is no second time field that could disagree with it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(ulid::Ulid);

impl MessageId {
    /// The largest timestamp a ULID can carry (2^48 - 1 ms, in the year 10889).
    pub const MAX_TIMESTAMP: UnixMillis = UnixMillis((1 << 48) - 1);

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(ulid::Ulid::from_bytes(bytes))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_bytes()
    }

    /// The relay's clock when it stamped this id.
    pub fn timestamp(self) -> UnixMillis {
        UnixMillis(self.0.timestamp_ms())
    }

    /// The smallest id at `time`: with [`MessageId::last_at`], bounds a time range of ids.
    pub fn first_at(time: UnixMillis) -> Self {
        Self(ulid::Ulid::from_parts(time.0.min(Self::MAX_TIMESTAMP.0), 0))
    }

    /// The largest id at `time`.
    pub fn last_at(time: UnixMillis) -> Self {
        Self(ulid::Ulid::from_parts(
            time.0.min(Self::MAX_TIMESTAMP.0),
            u128::MAX,
        ))
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

/// The id of a message's attachment: the message id plus one for the first attachment, plus two
/// for the second, and so on. The relay reserves these when it mints the message id
/// ([`MessageIdGenerator::next_for_message`]), so no other message gets one, and its envelope
/// signature covers the message id and the attachments' digests: every attachment has a
/// sortable, relay-minted id bound to its digest, with no field of its own on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttachmentId(MessageId);

impl AttachmentId {
    /// The id of attachment `index` of message `message` (`None` past the last possible id).
    pub fn of(message: MessageId, index: usize) -> Option<Self> {
        let mut id = message.0;
        for _ in 0..=index {
            id = id.increment()?;
        }
        Some(Self(MessageId(id)))
    }

    pub fn timestamp(self) -> UnixMillis {
        self.0.timestamp()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(MessageId::from_bytes(bytes))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_bytes()
    }
}

impl std::fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for AttachmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AttachmentId({})", self.0 .0)
    }
}

/// The text is not a 26-character ULID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a ULID (26 Crockford base32 characters)")]
pub struct InvalidMessageId;

impl std::str::FromStr for MessageId {
    type Err = InvalidMessageId;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Only the canonical form is accepted, so each id has one text form: 26 characters hold
        // 130 bits (a first character above '7' would alias another id), and Crockford base32
        // also reads lower case and I, L, O as digits.
        let id = ulid::Ulid::from_string(text).map_err(|_| InvalidMessageId)?;
        if id.to_string() != text {
            return Err(InvalidMessageId);
        }
        Ok(Self(id))
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// 2^80 ids were minted within one millisecond; cannot happen short of a broken random source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no more ids available within this millisecond")]
pub struct IdsExhausted;

/// Mints strictly increasing ids. When the clock has not moved past the last id's millisecond
/// (same millisecond, or the clock stepped back), the next id is the last one plus one, so order
/// of minting is always order of ids.
#[derive(Debug, Default, Clone)]
pub struct MessageIdGenerator {
    last: Option<ulid::Ulid>,
}

impl MessageIdGenerator {
    /// `random_bits` comes from the caller's CSPRNG; only its low 80 bits are used.
    pub fn next(&mut self, now: UnixMillis, random_bits: u128) -> Result<MessageId, IdsExhausted> {
        let now = now.0.min(MessageId::MAX_TIMESTAMP.0);
        let next = match self.last {
            Some(last) if now <= last.timestamp_ms() => last.increment().ok_or(IdsExhausted)?,
            _ => ulid::Ulid::from_parts(now, random_bits),
        };
        self.last = Some(next);
        Ok(MessageId(next))
    }

    /// Mints the id of a message with `attachments` attachments and reserves theirs (the ids
    /// right after it, see [`AttachmentId`]).
    pub fn next_for_message(
        &mut self,
        now: UnixMillis,
        random_bits: u128,
        attachments: usize,
    ) -> Result<MessageId, IdsExhausted> {
        let id = self.next(now, random_bits)?;
        if attachments > 0 {
            let last = AttachmentId::of(id, attachments - 1).ok_or(IdsExhausted)?;
            self.last = Some(last.0 .0);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ids_carry_the_relay_time_and_sort_like_it() {
        let mut generator = MessageIdGenerator::default();
        let early = generator.next(UnixMillis(1_000), u128::MAX).unwrap();
        let late = generator.next(UnixMillis(2_000), 0).unwrap();
        assert_eq!(early.timestamp(), UnixMillis(1_000));
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
        assert!(early.to_bytes() < late.to_bytes());
    }

    #[test]
    fn a_messages_attachments_get_the_ids_after_it_and_no_other_message_does() {
        let mut generator = MessageIdGenerator::default();
        let message = generator.next_for_message(UnixMillis(5_000), 9, 3).unwrap();
        let attachments: Vec<AttachmentId> = (0..3)
            .map(|index| AttachmentId::of(message, index).unwrap())
            .collect();
        assert!(attachments.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(attachments[0].timestamp(), UnixMillis(5_000));
        let next = generator.next(UnixMillis(5_000), 0).unwrap();
        assert!(next > attachments[2].0, "the reserved ids are skipped");
        assert_eq!(AttachmentId::of(MessageId::last_at(UnixMillis(1)), 0), None);
    }

    #[test]
    fn ids_stay_monotonic_within_a_millisecond_and_when_the_clock_steps_back() {
        let mut generator = MessageIdGenerator::default();
        let first = generator.next(UnixMillis(5_000), 9).unwrap();
        let same_millisecond = generator.next(UnixMillis(5_000), 3).unwrap();
        let clock_stepped_back = generator.next(UnixMillis(4_000), 1).unwrap();
        assert!(first < same_millisecond && same_millisecond < clock_stepped_back);
        assert_eq!(clock_stepped_back.timestamp(), UnixMillis(5_000));
    }

    #[test]
    fn id_text_form_is_canonical() {
        let id = MessageId::from_bytes([0x01; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<MessageId>(), Ok(id));
        assert_eq!(
            text.to_lowercase().parse::<MessageId>(),
            Err(InvalidMessageId)
        );
        assert_eq!("too short".parse::<MessageId>(), Err(InvalidMessageId));
    }

    #[test]
    fn each_id_has_exactly_one_accepted_spelling() {
        let highest = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ";
        assert_eq!(highest.parse::<MessageId>().unwrap().to_string(), highest);
        for alias in [
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01ARZ3NDEKTSV4RRFFQ69G5FAI",
            "01ARZ3NDEKTSV4RRFFQ69G5FAL",
            "O1ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert_eq!(alias.parse::<MessageId>(), Err(InvalidMessageId), "{alias}");
        }
    }
}
