//! External authorization providers: Istio's meshConfig `extensionProviders` of kind
//! `envoyExtAuthzHttp` and `envoyExtAuthzGrpc`, which `action: CUSTOM` policies name.
//!
//! The model keeps the fields as meshConfig spells them, and [`ExtensionProvider::validate`]
//! applies Istio's checks (`pilot/pkg/security/authz/builder/extauthz.go` and the mesh
//! validation it calls): a name, unique; exactly one API; a port in 1–65535; a service
//! `[<namespace>/]<hostname>`; `statusOnError` one of Envoy's `StatusCode` values; `pathPrefix`
//! starting with `/`; no header pattern that is a lone `*`. Istio turns a provider that fails
//! these checks into deny rules; Palisade refuses it outright (an error in the options), so a
//! typo never silently denies traffic.
//!
//! The HTTP and gRPC semantics the hosts implement (Envoy's `ext_authz` filter as Istio
//! configures it) are described in `docs/custom-authorization.md`.

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Errors};
use crate::source::SourceFile;
use crate::yaml;
use crate::yaml::{At, DResult, Str};

/// Istio's default `timeout` for both APIs: 600 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;

/// Envoy's default `status_on_error` (and Istio's when `statusOnError` is empty): 403.
pub const DEFAULT_STATUS_ON_ERROR: u16 = 403;

/// The values of Envoy's `envoy.type.v3.StatusCode` enum (without `Empty`, which Envoy
/// refuses): the only statuses `statusOnError` may name.
pub const ENVOY_STATUS_CODES: &[u16] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// One `extensionProviders` entry: a name and exactly one of the two ext_authz APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// The name `provider.name` refers to.
    pub name: String,
    /// The HTTP API (`envoyExtAuthzHttp`).
    #[serde(default)]
    pub envoy_ext_authz_http: Option<HttpProvider>,
    /// The gRPC API (`envoyExtAuthzGrpc`).
    #[serde(default)]
    pub envoy_ext_authz_grpc: Option<GrpcProvider>,
}

/// `envoyExtAuthzHttp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpProvider {
    /// `[<namespace>/]<hostname>` of the authorizer.
    pub service: String,
    /// Its port.
    pub port: u32,
    /// Prepended to the request's path in the check request.
    #[serde(default)]
    pub path_prefix: String,
    /// Request headers sent to the authorizer besides `:method`, `:path`, `:authority`,
    /// `authorization` and `content-length` (exact names, `prefix*` or `*suffix`, any case).
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// The authorizer's response headers copied into the request on allow.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// The authorizer's response headers sent to the client on deny (all but a few when
    /// empty, as Envoy does).
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// How long to wait, as a protobuf duration (`"10s"`, `"0.5s"`); 600 s when absent.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Allow the request when the authorizer cannot be reached or fails.
    #[serde(default)]
    pub fail_open: bool,
    /// The status sent when the authorizer fails (and `failOpen` is false); 403 when absent.
    #[serde(default)]
    pub status_on_error: Option<String>,
}

/// `envoyExtAuthzGrpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcProvider {
    /// `[<namespace>/]<hostname>` of the authorizer.
    pub service: String,
    /// Its port.
    pub port: u32,
    /// How long to wait, as a protobuf duration; 600 s when absent.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Allow the request when the authorizer cannot be reached or fails.
    #[serde(default)]
    pub fail_open: bool,
    /// The status sent when the authorizer fails (and `failOpen` is false); 403 when absent.
    #[serde(default)]
    pub status_on_error: Option<String>,
}

/// Which API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api<'a> {
    /// `envoyExtAuthzHttp`.
    Http(&'a HttpProvider),
    /// `envoyExtAuthzGrpc`.
    Grpc(&'a GrpcProvider),
}

impl ExtensionProvider {
    /// The provider's API (`None` only for a provider that fails [`ExtensionProvider::validate`]).
    pub fn api(&self) -> Option<Api<'_>> {
        match (&self.envoy_ext_authz_http, &self.envoy_ext_authz_grpc) {
            (Some(h), None) => Some(Api::Http(h)),
            (None, Some(g)) => Some(Api::Grpc(g)),
            _ => None,
        }
    }

    /// Whether the provider speaks gRPC (the only API Envoy's network `ext_authz` has).
    pub fn is_grpc(&self) -> bool {
        matches!(self.api(), Some(Api::Grpc(_)))
    }

    fn common(&self) -> (&str, u32, Option<&str>, bool, Option<&str>) {
        match self.api() {
            Some(Api::Http(h)) => (
                &h.service,
                h.port,
                h.timeout.as_deref(),
                h.fail_open,
                h.status_on_error.as_deref(),
            ),
            Some(Api::Grpc(g)) => (
                &g.service,
                g.port,
                g.timeout.as_deref(),
                g.fail_open,
                g.status_on_error.as_deref(),
            ),
            None => ("", 0, None, false, None),
        }
    }

    /// The authorizer's hostname: the service without its `<namespace>/`.
    pub fn hostname(&self) -> &str {
        let service = self.common().0;
        service.rsplit_once('/').map_or(service, |(_, h)| h)
    }

    /// The Envoy cluster Istio sends checks to: `outbound|<port>||<hostname>`.
    pub fn cluster(&self) -> String {
        format!("outbound|{}||{}", self.common().1, self.hostname())
    }

    /// The timeout in milliseconds (600,000 when absent; a valid provider's is parseable).
    pub fn timeout_ms(&self) -> u64 {
        self.common()
            .2
            .and_then(parse_duration_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// `failOpen`.
    pub fn fail_open(&self) -> bool {
        self.common().3
    }

    /// The status of a failed check (403 when absent).
    pub fn status_on_error(&self) -> u16 {
        self.common()
            .4
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_STATUS_ON_ERROR)
    }

    /// Istio's checks on one provider (see the module documentation).
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() {
            return Err("extension provider name must not be empty".into());
        }
        let (service, port, timeout, _, status) = match self.api() {
            Some(_) => self.common(),
            None => {
                return Err(format!(
                    "extension provider `{name}` must set exactly one of `envoyExtAuthzHttp` or `envoyExtAuthzGrpc`"
                ));
            }
        };
        if !(1..=65535).contains(&port) {
            return Err(format!(
                "extension provider `{name}`: port must be in the range [1, 65535], found: {port}"
            ));
        }
        let parts: Vec<&str> = service.split('/').collect();
        if service.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "extension provider `{name}`: service must be `[<namespace>/]<hostname>`, found: `{service}`"
            ));
        }
        if let Some(t) = timeout
            && parse_duration_ms(t).is_none()
        {
            return Err(format!(
                "extension provider `{name}`: invalid timeout `{t}` (a duration such as `10s` or `0.5s`)"
            ));
        }
        if let Some(s) = status {
            let ok = s
                .parse::<u16>()
                .is_ok_and(|c| ENVOY_STATUS_CODES.contains(&c));
            if !ok {
                return Err(format!(
                    "extension provider `{name}`: unsupported statusOnError `{s}` (one of Envoy's HTTP status codes)"
                ));
            }
        }
        if let Some(Api::Http(h)) = self.api() {
            if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
                return Err(format!(
                    "extension provider `{name}`: pathPrefix must begin with `/`, found: `{}`",
                    h.path_prefix
                ));
            }
            for (field, values) in [
                (
                    "includeRequestHeadersInCheck",
                    &h.include_request_headers_in_check,
                ),
                ("headersToUpstreamOnAllow", &h.headers_to_upstream_on_allow),
                (
                    "headersToDownstreamOnDeny",
                    &h.headers_to_downstream_on_deny,
                ),
            ] {
                if values.iter().any(|v| v == "*" || v.is_empty()) {
                    return Err(format!(
                        "extension provider `{name}`: a single wildcard (`*`) or an empty name is not supported in `{field}`; use a prefix (`x-*`) or a suffix (`*-id`)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Validates a list of providers: each as [`ExtensionProvider::validate`], names unique.
pub fn validate_all(providers: &[ExtensionProvider]) -> Result<(), String> {
    for (i, p) in providers.iter().enumerate() {
        p.validate()?;
        if providers.iter().take(i).any(|q| q.name == p.name) {
            return Err(format!(
                "extension provider name must be unique, found duplicate: `{}`",
                p.name
            ));
        }
    }
    Ok(())
}

/// A header pattern as Istio writes it into Envoy's `ListStringMatcher`: `*suffix`, `prefix*`
/// or an exact name, compared ignoring case.
pub fn header_pattern_matches(pattern: &str, name: &str) -> bool {
    let lower = |s: &str| s.to_ascii_lowercase();
    if let Some(suffix) = pattern.strip_prefix('*') {
        lower(name).ends_with(&lower(suffix))
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        lower(name).starts_with(&lower(prefix))
    } else {
        pattern.eq_ignore_ascii_case(name)
    }
}

/// Whether any of `patterns` matches `name` (see [`header_pattern_matches`]).
pub fn any_pattern_matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| header_pattern_matches(p, name))
}

/// A protobuf JSON duration (`"10s"`, `"0.002s"`, `"1.5s"`) in milliseconds, rounded up so a
/// positive duration never becomes zero.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let number = text.strip_suffix('s')?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1000)?
        .checked_add(nanos.div_ceil(1_000_000))
}

/// Reads the `extensionProviders` of a meshConfig document (YAML, as in the `mesh` key of
/// Istio's `istio` ConfigMap). Other meshConfig fields are ignored, and so are providers of
/// other kinds (tracing, access logs), as Istio's authorization builder ignores them. Every
/// provider is validated; errors carry the file, line and column.
pub fn read_mesh_config(file: &SourceFile) -> Result<Vec<ExtensionProvider>, Errors> {
    let place = |d: Diagnostic| -> Errors {
        let mut d = d;
        if let Some(l) = &mut d.location {
            l.file.clone_from(&file.name);
        }
        Errors::one(d)
    };
    let docs = yaml::load_documents(&file.text).map_err(place)?;
    let mut out: Vec<ExtensionProvider> = Vec::new();
    for doc in &docs {
        let root = At::root(doc);
        let mut f = root.fields().map_err(place)?;
        let Some(list) = f.take("extensionProviders") else {
            continue;
        };
        for (item, path) in list.at().items().map_err(place)? {
            let item = item.with_path(&path);
            if let Some(p) = read_provider(item).map_err(place)? {
                if out.iter().any(|q| q.name == p.name) {
                    return Err(place(item.error(format!(
                        "extension provider name must be unique, found duplicate: `{}`",
                        p.name
                    ))));
                }
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn read_provider(at: At<'_>) -> DResult<Option<ExtensionProvider>> {
    let mut f = at.fields()?;
    let name = f.require("name")?.at().string()?;
    let http = f.take("envoyExtAuthzHttp");
    let grpc = f.take("envoyExtAuthzGrpc");
    // Other provider kinds (zipkin, envoyFileAccessLog, …) are not authorizers.
    f.ignore(&[
        "envoyExtAuthzHttp",
        "envoyExtAuthzGrpc",
        "name",
        "zipkin",
        "lightstep",
        "datadog",
        "stackdriver",
        "opencensus",
        "skywalking",
        "opentelemetry",
        "prometheus",
        "envoyFileAccessLog",
        "envoyHttpAls",
        "envoyTcpAls",
        "envoyOtelAls",
        "sds",
    ]);
    f.finish(&["name", "envoyExtAuthzHttp", "envoyExtAuthzGrpc"])?;
    let provider = match (http, grpc) {
        (None, None) => return Ok(None),
        (Some(h), None) => ExtensionProvider {
            name,
            envoy_ext_authz_http: Some(read_http(h.at())?),
            envoy_ext_authz_grpc: None,
        },
        (None, Some(g)) => ExtensionProvider {
            name,
            envoy_ext_authz_http: None,
            envoy_ext_authz_grpc: Some(read_grpc(g.at())?),
        },
        (Some(_), Some(_)) => {
            return Err(at.error("set only one of `envoyExtAuthzHttp` or `envoyExtAuthzGrpc`"));
        }
    };
    provider.validate().map_err(|e| at.error(e))?;
    Ok(Some(provider))
}

/// Fields of Istio's API that Palisade accepts and ignores: they change only the client's
/// response on allow, never a verdict. The others it does not model (the request body, added
/// headers, the deprecated `includeHeadersInCheck`) could change the authorizer's answer, so
/// they are refused as unknown fields.
const IGNORED_HTTP: &[&str] = &["headersToDownstreamOnAllow"];

fn read_http(at: At<'_>) -> DResult<HttpProvider> {
    let mut f = at.fields()?;
    let service = f.require("service")?.at().string()?;
    let port = port(f.require("port")?.at())?;
    let path_prefix = match f.take("pathPrefix") {
        Some(p) => p.at().string()?,
        None => String::new(),
    };
    let strings = |f: &mut yaml::Fields<'_>, key: &str| -> DResult<Vec<String>> {
        Ok(match f.take(key) {
            Some(v) => v
                .at()
                .strings()?
                .into_iter()
                .map(|s: Str| s.value)
                .collect(),
            None => Vec::new(),
        })
    };
    let include = strings(&mut f, "includeRequestHeadersInCheck")?;
    let upstream = strings(&mut f, "headersToUpstreamOnAllow")?;
    let downstream = strings(&mut f, "headersToDownstreamOnDeny")?;
    let timeout = opt_string(&mut f, "timeout")?;
    let fail_open = match f.take("failOpen") {
        Some(b) => b.at().boolean()?,
        None => false,
    };
    let status_on_error = opt_string(&mut f, "statusOnError")?;
    f.ignore(IGNORED_HTTP);
    let mut known = vec![
        "service",
        "port",
        "pathPrefix",
        "includeRequestHeadersInCheck",
        "headersToUpstreamOnAllow",
        "headersToDownstreamOnDeny",
        "timeout",
        "failOpen",
        "statusOnError",
    ];
    known.extend_from_slice(IGNORED_HTTP);
    f.finish(&known)?;
    Ok(HttpProvider {
        service,
        port,
        path_prefix,
        include_request_headers_in_check: include,
        headers_to_upstream_on_allow: upstream,
        headers_to_downstream_on_deny: downstream,
        timeout,
        fail_open,
        status_on_error,
    })
}

fn read_grpc(at: At<'_>) -> DResult<GrpcProvider> {
    let mut f = at.fields()?;
    let service = f.require("service")?.at().string()?;
    let port = port(f.require("port")?.at())?;
    let timeout = opt_string(&mut f, "timeout")?;
    let fail_open = match f.take("failOpen") {
        Some(b) => b.at().boolean()?,
        None => false,
    };
    let status_on_error = opt_string(&mut f, "statusOnError")?;
    f.finish(&["service", "port", "timeout", "failOpen", "statusOnError"])?;
    Ok(GrpcProvider {
        service,
        port,
        timeout,
        fail_open,
        status_on_error,
    })
}

fn port(at: At<'_>) -> DResult<u32> {
    let v = at.integer(0, i64::from(u32::MAX))?;
    u32::try_from(v).map_err(|_| at.error("port out of range"))
}

fn opt_string(f: &mut yaml::Fields<'_>, key: &str) -> DResult<Option<String>> {
    f.take(key).map(|v| v.at().string()).transpose()
}

#[cfg(test)]
mod tests;
