//! Bytes in a task's output (a picture, say). On the wire and to the task's code they are one
//! field of the JSON output, written as a `data:` URL; the app takes them out when the task
//! ends ([`crate::TaskType::take_binary`]), stores them once and serves them by the task's id,
//! so that neither the page's live stream nor the stored JSON carries them.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Value, json};

/// Bytes and their media type, as a field of a task's output: `png: Binary`.
///
/// An output may have one such field, at its top level: it becomes the task's downloadable
/// output (`/tasks/{id}/output`), shown as a picture when it is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Binary {
    media_type: String,
    bytes: Vec<u8>,
}

impl Binary {
    /// `bytes` of type `media_type` (`image/png`).
    pub fn new(media_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.into(),
            bytes,
        }
    }

    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// What the stored output keeps in the field's place.
    pub fn stub(&self) -> Value {
        json!({ "media_type": self.media_type, "bytes": self.bytes.len() })
    }

    /// From a `data:<media type>;base64,<bytes>` URL.
    pub fn from_data_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("data:")
            .ok_or("a binary output is a data: URL")?;
        let (media_type, encoded) = rest
            .split_once(";base64,")
            .ok_or("a binary output is a base64 data: URL")?;
        if media_type.is_empty() || media_type.contains([',', ';']) {
            return Err(format!("{media_type:?} is not a media type"));
        }
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("a binary output's base64: {e}"))?;
        Ok(Self::new(media_type, bytes))
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Binary({}, {} bytes)", self.media_type, self.bytes.len())
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut url = String::with_capacity(self.media_type.len() + 13 + self.bytes.len() * 4 / 3);
        url.push_str("data:");
        url.push_str(&self.media_type);
        url.push_str(";base64,");
        STANDARD.encode_string(&self.bytes, &mut url);
        serializer.serialize_str(&url)
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let url = Cow::<str>::deserialize(deserializer)?;
        Self::from_data_url(&url).map_err(de::Error::custom)
    }
}

/// The name its schema has under `$defs`: how a task type finds its binary field.
pub(crate) const SCHEMA_NAME: &str = "Binary";

impl JsonSchema for Binary {
    fn schema_name() -> Cow<'static, str> {
        SCHEMA_NAME.into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "data-url",
            "contentEncoding": "base64",
            "description": "Bytes with their media type, as a data: URL (RFC 2397).",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_data_urls_both_ways() {
        let png = Binary::new("image/png", vec![0x89, b'P', b'N', b'G', 0, 255]);
        let json = serde_json::to_value(&png).unwrap();
        assert_eq!(json, "data:image/png;base64,iVBORwD/");
        assert_eq!(serde_json::from_value::<Binary>(json).unwrap(), png);
        assert_eq!(png.stub(), json!({"media_type": "image/png", "bytes": 6}));
    }

    #[test]
    fn what_is_not_a_base64_data_url_is_refused_with_the_reason() {
        for (bad, why) in [
            ("iVBORw==", "data: URL"),
            ("data:image/png,abc", "base64 data: URL"),
            ("data:;base64,iVBORw==", "not a media type"),
            ("data:image/png;base64,!!", "base64"),
        ] {
            let error = Binary::from_data_url(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
