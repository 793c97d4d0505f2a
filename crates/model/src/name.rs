//! [`Name`]: an object's name or namespace, copied without allocating.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes kept in place: Kubernetes names and namespaces are nearly always this short.
const INLINE: usize = 22;

/// A name or namespace of a Kubernetes object. Up to 22 bytes are kept in place, longer ones
/// in one shared allocation, so a copy never allocates. Every [`ObjectKey`](crate::ObjectKey)
/// is held several times over (the manifest directory's index and applied map, the model's
/// maps and indexes, the frontends): as `String`s each copy was two small allocations, 320,000
/// of them at 10,000 Services, scattered over pages the start-up's parsing left mostly empty
/// (issue 20). The same size as a `String`; compared, ordered, hashed and serialized as the
/// `str` it holds.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    /// Invariant: `bytes[..len]` is UTF-8 (copied from a `str`, never changed).
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Shared(Arc<str>),
}

impl Name {
    pub fn new(text: &str) -> Self {
        if text.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            // At most INLINE (22) bytes: fits in a u8.
            Self(Repr::Inline { len: text.len() as u8, bytes })
        } else {
            Self(Repr::Shared(Arc::from(text)))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // SAFETY: the invariant of `Repr::Inline`: the first `len` bytes were copied
                // from a `str` and are never changed.
                unsafe { std::str::from_utf8_unchecked(&bytes[..usize::from(*len)]) }
            }
            Repr::Shared(text) => text,
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Self(Repr::Inline { len: 0, bytes: [0; INLINE] })
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Self {
        Self::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Self {
        name.clone()
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.as_str().to_owned()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    /// As the `str`, so that maps keyed by names can be searched with a `&str`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::new(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_name_takes_no_more_room_than_a_string() {
        assert_eq!(size_of::<Name>(), size_of::<String>());
    }

    #[test]
    fn short_and_long_names_behave_as_their_text() {
        for text in ["", "default", "a".repeat(22).as_str(), "b".repeat(23).as_str(), "ünïcødé"]
        {
            let name = Name::from(text);
            assert_eq!(name.as_str(), text);
            assert_eq!(name, text);
            assert_eq!(name.clone(), name);
            assert_eq!(name.to_string(), text);
            assert_eq!(format!("{name:?}"), format!("{text:?}"));
            let json = serde_json::to_string(&name).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), name);
        }
        assert!(matches!(Name::from("a".repeat(22)).0, Repr::Inline { .. }));
        assert!(matches!(Name::from("a".repeat(23)).0, Repr::Shared(_)));
        let (short, long, after) = (Name::from("a"), Name::from("b".repeat(40)), Name::from("c"));
        assert!(short < long && long < after, "ordered as the text, in place or shared");
        let map: HashMap<Name, u8> = [(Name::from("kube-system"), 1)].into();
        assert_eq!(map.get("kube-system"), Some(&1), "hashed as the str");
    }
}
