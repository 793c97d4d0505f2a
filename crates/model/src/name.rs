//! [`Name`]: an object's name or namespace, copied without allocating.

/// A name or namespace of a Kubernetes object: [`smol_str::SmolStr`], which keeps up to 23
/// bytes in place and longer text in one shared allocation, so a copy never allocates. Every
/// [`ObjectKey`](crate::ObjectKey) is held several times over (the manifest directory's index
/// and applied map, the model's maps and indexes, the frontends): as `String`s each copy was
/// two small allocations, 320,000 of them at 10,000 Services, scattered over pages the
/// start-up's parsing left mostly empty (issue 20). The same size as a `String`; compared,
/// ordered, hashed and serialized as the `str` it holds.
pub type Name = smol_str::SmolStr;

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
        for text in ["", "default", "a".repeat(23).as_str(), "b".repeat(24).as_str(), "ünïcødé"]
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
        assert!(!Name::from("a".repeat(23)).is_heap_allocated(), "kept in place");
        assert!(Name::from("a".repeat(24)).is_heap_allocated(), "shared");
        let (short, long, after) = (Name::from("a"), Name::from("b".repeat(40)), Name::from("c"));
        assert!(short < long && long < after, "ordered as the text, in place or shared");
        let map: HashMap<Name, u8> = [(Name::from("kube-system"), 1)].into();
        assert_eq!(map.get("kube-system"), Some(&1), "hashed as the str");
    }
}
