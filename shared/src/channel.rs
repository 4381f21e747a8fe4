//! Channel names and their rules.

use crate::limits::MAX_CHANNEL_NAME_CHARS;

/// A valid channel name: 1 to [`MAX_CHANNEL_NAME_CHARS`] characters from `a-z`, `0-9`, `-` and
/// `_`, starting with a letter or a digit. Lower-case ASCII only, so two names that look alike are
/// the same name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelName(String);

/// Why a text is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannelName {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_NAME_CHARS} characters")]
    TooLong,
    #[error("channel name may only contain a-z, 0-9, '-' and '_'")]
    BadCharacter,
    #[error("channel name must start with a letter or a digit")]
    BadFirstCharacter,
}

impl ChannelName {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidChannelName> {
        let name = name.into();
        let first = *name.as_bytes().first().ok_or(InvalidChannelName::Empty)?;
        if name.len() > MAX_CHANNEL_NAME_CHARS {
            return Err(InvalidChannelName::TooLong);
        }
        let allowed = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        if !name
            .bytes()
            .all(|byte| allowed(byte) || byte == b'-' || byte == b'_')
        {
            return Err(InvalidChannelName::BadCharacter);
        }
        if !allowed(first) {
            return Err(InvalidChannelName::BadFirstCharacter);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChannelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn channel_names_follow_the_documented_rules() {
        for good in ["general", "0day", "team-a_b", &"x".repeat(32)] {
            assert!(ChannelName::new(good).is_ok(), "{good}");
        }
        assert_eq!(ChannelName::new(""), Err(InvalidChannelName::Empty));
        assert_eq!(
            ChannelName::new("x".repeat(33)),
            Err(InvalidChannelName::TooLong)
        );
        for bad in ["General", "café", "a b", "a/b", "<script>"] {
            assert_eq!(
                ChannelName::new(bad),
                Err(InvalidChannelName::BadCharacter),
                "{bad}"
            );
        }
        assert_eq!(
            ChannelName::new("-x"),
            Err(InvalidChannelName::BadFirstCharacter)
        );
        assert_eq!(
            ChannelName::new("_x"),
            Err(InvalidChannelName::BadFirstCharacter)
        );
    }
}
