//! The PostgreSQL front door: the listener, pgwire handlers and Arrow → wire encoding.
//!
//! It knows the [`crate::engine::Engine`] it sends SQL to, and nothing of cubes or of the lake.

pub mod admit;
pub mod auth;
pub mod connection;
pub mod encode;
pub mod framing;
pub mod cancel;
pub mod command;
pub mod handler;
pub mod session;
pub mod server;
