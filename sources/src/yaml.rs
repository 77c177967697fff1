//! YAML documents as JSON values, so that Kubernetes' own (serde) types read both spellings.

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Number, Value};

/// Every document of a YAML stream, as JSON values (empty documents are skipped).
pub(crate) fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs = Yaml::load_from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(docs.len());
    for d in &docs {
        let v = to_json(d, 0)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Deeper than any Kubernetes object, and shallow enough for the stack.
const MAX_DEPTH: usize = 128;

fn to_json(y: &Yaml<'_>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nesting deeper than {MAX_DEPTH}"));
    }
    Ok(match y {
        Yaml::Value(s) => scalar(s),
        // Plain text the loader left unresolved: a string, as a string field reads it.
        Yaml::Representation(text, _, _) => Value::String(text.to_string()),
        Yaml::Sequence(items) => Value::Array(
            items
                .iter()
                .map(|i| to_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Yaml::Value(s) => match scalar(s) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    Yaml::Representation(text, _, _) => text.to_string(),
                    _ => return Err("a mapping key that is not a scalar".to_string()),
                };
                out.insert(key, to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(_, inner) => to_json(inner, depth + 1)?,
        Yaml::Alias(_) => return Err("an unresolved alias".to_string()),
        Yaml::BadValue => return Err("a value that is not YAML".to_string()),
    })
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}
