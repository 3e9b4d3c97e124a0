//! Rampart shared types: the RFC 9457 problem mapper and the configuration
//! schema with its compiler.
//!
//! This crate owns *what* a rejection looks like and *what* a valid
//! configuration is. It never does I/O on the request path and never panics on
//! input: every parse error becomes a value.

pub mod config;
pub mod problem;

pub use problem::{Problem, ProblemCode};
