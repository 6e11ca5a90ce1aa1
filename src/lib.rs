//! kvseal: keys, sealing and scanning for Bitnami Sealed Secrets across cluster fleets.
//!
//! Layers, from the inside out:
//! - [`format`]: the hybrid encryption format, pure (bytes, key and label in; bytes out);
//! - [`keys`]: RSA keys, fingerprints, PEM and self-signed certificates;
//! - [`manifest`]: Secret and SealedSecret documents, read and written as kubeseal does;
//! - [`store`]: where key generations live, behind the [`store::KeyStore`] trait;
//! - [`config`], `kvseal.toml`;
//! - [`fleet`] and [`lifecycle`], which tie clusters, key sets and certificates together;
//! - [`cluster`], live clusters through the Kubernetes API.
//!
//! The library never prints; the `kvseal` binary renders what it returns.
// The only unsafe code is the raw RSA call in keys/raw.rs, which allows it locally.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod cluster;
pub mod cluster_manifests;
pub mod config;
pub mod fleet;
pub mod format;
pub mod fsutil;
pub mod keys;
pub mod lifecycle;
pub mod manifest;
pub mod report;
pub mod reseal;
pub mod scan;
pub mod secret;
pub mod store;
