//! lakecube's integration tests, one module per area, built as one test binary (see
//! `autotests = false` in Cargo.toml). Run one area with
//! `cargo test --test integration server::`, one test by its name.
//!
//! They drive real parts: lakes generated into scratch folders, servers on free ports, the
//! `lakecube` binary, psql and the client drivers of `tests/clients/`, a throwaway PostgreSQL.

mod common;

mod cli;
mod clients;
mod conformance;
mod fuzz;
mod generator;
mod hardening;
mod ingest;
mod model;
mod replays;
mod rollups;
mod access;
mod s3;
mod security;
mod semantic;
mod server;
mod session;
mod sqllogictests;
