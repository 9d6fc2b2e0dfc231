//! How environment variables travel on the daemon's control socket (`cork exec` hands the
//! caller's environment to the daemon, which answers what to remove): a name or value is
//! a JSON string when it is UTF-8, as nearly all are, else an array of its bytes — never
//! lossy, so the variable removed is exactly the one the caller has.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One name or value as it travels.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Text {
    Utf8(String),
    Bytes(Vec<u8>),
}

impl Text {
    fn of(s: &OsString) -> Text {
        match s.to_str() {
            Some(t) => Text::Utf8(t.to_owned()),
            None => Text::Bytes(s.as_encoded_bytes().to_vec()),
        }
    }

    fn into_os(self) -> OsString {
        match self {
            Text::Utf8(t) => t.into(),
            Text::Bytes(b) => OsString::from_vec(b),
        }
    }
}

/// `#[serde(with = "os_string")]` for one `OsString`.
pub mod os_string {
    use super::*;

    pub fn serialize<S: Serializer>(s: &OsString, ser: S) -> Result<S::Ok, S::Error> {
        Text::of(s).serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<OsString, D::Error> {
        Text::deserialize(de).map(Text::into_os)
    }
}

/// `#[serde(with = "vars")]` for an environment: `[[name, value], ...]` in order.
pub mod vars {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[(OsString, OsString)], ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(v.iter().map(|(n, v)| (Text::of(n), Text::of(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Vec<(OsString, OsString)>, D::Error> {
        let pairs = Vec::<(Text, Text)>::deserialize(de)?;
        Ok(pairs
            .into_iter()
            .map(|(n, v)| (n.into_os(), v.into_os()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Env {
        #[serde(with = "super::vars")]
        vars: Vec<(OsString, OsString)>,
    }

    #[test]
    fn utf8_is_text_and_other_bytes_survive() {
        let env = Env {
            vars: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                (
                    "ODD".into(),
                    OsString::from_vec(vec![0x66, 0xff, 0x00, 0x80]),
                ),
            ],
        };
        let json = serde_json::to_string(&env).expect("serialises");
        assert_eq!(
            json,
            r#"{"vars":[["PATH","/usr/bin:/bin"],["ODD",[102,255,0,128]]]}"#
        );
        let back: Env = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, env);
    }
}
