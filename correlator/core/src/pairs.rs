//! Maps written as lists of `[key, value]` pairs, for state whose keys are not strings
//! (JSON object keys must be).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes any map as a sequence of pairs.
pub fn serialize<'a, M, K, V, S>(map: &'a M, s: S) -> Result<S::Ok, S::Error>
where
    &'a M: IntoIterator<Item = (&'a K, &'a V)>,
    K: Serialize + 'a,
    V: Serialize + 'a,
    S: Serializer,
{
    s.collect_seq(map)
}

/// Deserializes a sequence of pairs into any map.
pub fn deserialize<'de, M, K, V, D>(d: D) -> Result<M, D::Error>
where
    M: FromIterator<(K, V)>,
    K: Deserialize<'de>,
    V: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
}

/// [`serialize`] for a field that holds a reference to the map.
pub fn serialize_ref<'a, M, K, V, S>(map: &&'a M, s: S) -> Result<S::Ok, S::Error>
where
    &'a M: IntoIterator<Item = (&'a K, &'a V)>,
    K: Serialize + 'a,
    V: Serialize + 'a,
    S: Serializer,
{
    serialize(*map, s)
}
