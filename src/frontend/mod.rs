//! The PostgreSQL front door: the listener, the connection loop, pgwire handlers and
//! Arrow → wire encoding.
//!
//! It knows the [`crate::engine::Engine`] it sends SQL to, and nothing of cubes or of the lake.
//! Its files, by the path of a connection: `server` (accept loop) → `connection` (one
//! connection's loop, over `framing`) → `startup` (authentication with `auth`, the slot of
//! `admit`) → `handler` (the query path, simple query) and `extended` (Parse, Bind, Describe,
//! Execute) → `command` (session statements) | `cancel` (timeouts, streaming) → `encode`;
//! `session` is a connection's state.

pub mod admit;
pub mod auth;
pub mod cancel;
pub mod command;
pub mod copy;
pub mod connection;
pub mod encode;
pub mod extended;
pub mod framing;
pub mod handler;
pub mod server;
pub mod session;
pub mod startup;
