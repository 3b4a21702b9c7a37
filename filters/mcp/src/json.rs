//! JSON as the filter reads it: nesting bounded before parsing, and objects
//! with a repeated key refused. A repeated key is how a message says one
//! thing to the filter and another to a server whose parser keeps the
//! other copy (`{"name":"search","name":"delete_all"}`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// How deeply arrays and objects nest in `text` (0 for a scalar), counted
/// outside strings; stops counting past `limit`.
pub fn depth_exceeds(text: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A JSON value whose objects have no repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Strict(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("repeated key `{key}`")));
            }
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// Parses `text` as one JSON value, refusing repeated object keys.
pub fn parse_strict(text: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let Strict(value) = Strict::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_counted_outside_strings() {
        assert!(!depth_exceeds(b"1", 0));
        assert!(!depth_exceeds(b"[[1]]", 2));
        assert!(depth_exceeds(b"[[1]]", 1));
        assert!(!depth_exceeds(br#"{"a":"[[[[\"{{{"}"#, 1));
        assert!(depth_exceeds(br#"{"a":"\\",  "b":[{}]}"#, 2));
        assert!(depth_exceeds(&[b'['; 100_000], 64));
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#).is_ok());
        assert!(parse_strict(br#"{"name":"search","name":"delete_all"}"#).is_err());
        assert!(parse_strict(br#"{"p":{"x":1,"x":1}}"#).is_err());
        assert!(parse_strict(br#"[{"x":1},{"x":1}]"#).is_ok());
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert!(
            parse_strict(br#"{"a":"\ud800"}"#).is_err(),
            "a lone surrogate"
        );
        assert_eq!(
            parse_strict(br#"{"n":-3,"f":1.5,"t":true,"z":null,"s":"x"}"#).unwrap(),
            serde_json::json!({"n":-3,"f":1.5,"t":true,"z":null,"s":"x"})
        );
    }
}
