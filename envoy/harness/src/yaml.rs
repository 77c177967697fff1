//! YAML (Istio policies, golden Envoy filters) to `serde_json::Value`, so golden filters can be
//! embedded verbatim in a JSON bootstrap.

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Every document of a multi-document YAML text, as JSON values (empty documents dropped).
pub fn yaml_to_json(text: &str) -> Result<Vec<Value>> {
    let docs = Yaml::load_from_str(text).map_err(|e| Error(format!("invalid YAML: {e}")))?;
    let mut out = Vec::new();
    for doc in &docs {
        let v = convert(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn convert(y: &Yaml<'_>) -> Result<Value> {
    Ok(match y {
        Yaml::Value(s) => scalar(s)?,
        Yaml::Representation(s, _, _) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(convert).collect::<Result<_>>()?),
        Yaml::Mapping(m) => {
            let mut map = Map::new();
            for (k, v) in m {
                let key = match k {
                    Yaml::Value(Scalar::String(s)) => s.to_string(),
                    Yaml::Value(Scalar::Integer(i)) => i.to_string(),
                    Yaml::Value(Scalar::Boolean(b)) => b.to_string(),
                    other => return Err(Error(format!("unsupported YAML mapping key {other:?}"))),
                };
                map.insert(key, convert(v)?);
            }
            Value::Object(map)
        }
        Yaml::Tagged(_, inner) => convert(inner)?,
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(Error::new("YAML aliases and bad values are not supported"));
        }
    })
}

fn scalar(s: &Scalar<'_>) -> Result<Value> {
    Ok(match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .ok_or_else(|| Error::new("non-finite float in YAML"))?,
        Scalar::String(s) => Value::String(s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    #[test]
    fn multi_doc_with_quoted_keys_and_numbers() {
        let v =
            yaml_to_json("a:\n  '@type': x\n  port: 80\n  p: \"80\"\n---\nb: [true]\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["a"]["@type"], "x");
        assert_eq!(v[0]["a"]["port"], 80);
        assert_eq!(v[0]["a"]["p"], "80");
        assert_eq!(v[1]["b"][0], true);
    }
}
