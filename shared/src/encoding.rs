//! Text forms of binary values: unpadded base64url (RFC 4648 §5), strict on decode.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Why a base64url text could not be turned into the expected bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextFormError {
    #[error("not unpadded base64url")]
    NotBase64Url,
    #[error("expected {expected} bytes, got {actual}")]
    WrongLength { expected: usize, actual: usize },
}

/// Encodes bytes as unpadded base64url.
pub fn to_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded, canonical base64url (padding and non-zero trailing bits are rejected, so each
/// value has exactly one text form).
pub fn from_base64url(text: &str) -> Result<Vec<u8>, TextFormError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TextFormError::NotBase64Url)
}

/// Decodes unpadded base64url into exactly `N` bytes.
pub fn fixed_from_base64url<const N: usize>(text: &str) -> Result<[u8; N], TextFormError> {
    let bytes = from_base64url(text)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| TextFormError::WrongLength {
        expected: N,
        actual: bytes.len(),
    })
}

/// Gives a fixed-size byte newtype its base64url `Display`, `FromStr` and serde string form.
macro_rules! base64url_text_form {
    ($type:ident, $len:expr) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::encoding::to_base64url(&self.0))
            }
        }

        impl std::str::FromStr for $type {
            type Err = $crate::encoding::TextFormError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::encoding::fixed_from_base64url::<$len>(text).map(Self)
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(|error| {
                    serde::de::Error::custom(format_args!("{}: {error}", stringify!($type)))
                })
            }
        }
    };
}
pub(crate) use base64url_text_form;

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn base64url_round_trips_and_rejects_padding_and_wrong_lengths() {
        let bytes = [0xfbu8, 0xff, 0x01];
        let text = to_base64url(&bytes);
        assert_eq!(text, "-_8B");
        assert_eq!(from_base64url(&text).unwrap(), bytes);
        assert_eq!(from_base64url("-_8B="), Err(TextFormError::NotBase64Url));
        assert_eq!(from_base64url("+/8B"), Err(TextFormError::NotBase64Url));
        assert_eq!(
            fixed_from_base64url::<4>(&text),
            Err(TextFormError::WrongLength {
                expected: 4,
                actual: 3
            })
        );
    }

    #[test]
    fn base64url_rejects_non_canonical_trailing_bits() {
        // "AB" decodes to one byte only if its unused low bits are zero; "AA" is canonical.
        assert!(from_base64url("AA").is_ok());
        assert_eq!(from_base64url("AB"), Err(TextFormError::NotBase64Url));
    }
}
