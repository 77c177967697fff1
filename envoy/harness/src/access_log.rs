//! The recorded-traffic access-log format: one JSON object per line, with what `palisade
//! replay` needs to rebuild each request (see README "Recorded traffic: the access-log
//! format"). The format itself is the file `envoy/access-log.json` (Envoy's `json_format`
//! dictionary); this module embeds it and attaches it to listeners.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{Context, Error, Result};

/// `envoy/access-log.json`, verbatim.
pub const FORMAT_JSON: &str = include_str!("../../access-log.json");

/// The `json_format` dictionary.
pub fn json_format() -> Result<Map<String, Value>> {
    match serde_json::from_str(FORMAT_JSON).context(|| "parsing envoy/access-log.json".into())? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::new("envoy/access-log.json is not a JSON object")),
    }
}

/// The top-level keys every line carries (each present, `null` when Envoy has no value).
pub fn fields() -> Result<Vec<String>> {
    Ok(json_format()?.keys().cloned().collect())
}

/// An `envoy.access_loggers.file` entry writing the format to `path`.
pub fn file_access_log(path: &Path) -> Result<Value> {
    Ok(json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": { "json_format": Value::Object(json_format()?) },
        },
    }))
}

/// Adds the access log (writing to `path`) to every HTTP connection manager (one line per
/// request) and every `tcp_proxy` (one line per connection) of these listeners.
pub fn add_to_listeners(listeners: &mut [Value], path: &Path) -> Result<()> {
    let log = file_access_log(path)?;
    for l in listeners {
        let Some(chains) = l.get_mut("filter_chains").and_then(Value::as_array_mut) else {
            continue;
        };
        for chain in chains {
            let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
                continue;
            };
            for f in filters {
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                if matches!(
                    name,
                    "envoy.filters.network.http_connection_manager"
                        | "envoy.filters.network.tcp_proxy"
                ) && let Some(tc) = f.get_mut("typed_config").and_then(Value::as_object_mut)
                {
                    tc.insert("access_log".into(), json!([log.clone()]));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_format_names_what_replay_needs() {
        let f = json_format().unwrap();
        for (key, op) in [
            ("source_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
            ("direct_peer_address", "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
            ("peer_uri_san", "%DOWNSTREAM_PEER_URI_SAN%"),
            ("sni", "%REQUESTED_SERVER_NAME%"),
            ("authority", "%REQ(:AUTHORITY)%"),
            ("path", "%REQ(:PATH)%"),
            ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
        ] {
            assert_eq!(f[key], op, "{key}");
        }
        assert!(f["request_headers"].is_object());
        let mut listeners = vec![json!({"filter_chains": [{"filters": [
            {"name": "envoy.filters.network.tcp_proxy", "typed_config": {}},
            {"name": "other", "typed_config": {}},
        ]}]})];
        add_to_listeners(&mut listeners, Path::new("/tmp/x.log")).unwrap();
        let filters = &listeners[0]["filter_chains"][0]["filters"];
        assert!(filters[0]["typed_config"]["access_log"].is_array());
        assert!(filters[1]["typed_config"].get("access_log").is_none());
    }
}
