//! Rampart's tamper-evident audit trail.
//!
//! - [`merkle`]: the Merkle tree of RFC 9162 (Certificate Transparency
//!   version 2.0), §2.1: leaf and node hashing with the `0x00` / `0x01`
//!   domain-separation prefixes, an incremental tree, and inclusion and
//!   consistency proofs with their verifiers.
//! - [`event`] and [`clock`]: the typed event schema and the UTC clock
//!   that reports its sync state.
//! - [`note`]: checkpoints in the C2SP `tlog-checkpoint` / `signed-note`
//!   text format, signed with an Ed25519 key the key provider holds.
//! - [`segment`], [`tree`], [`log`], [`reader`], [`spool`]: the append-only
//!   segment files, the stored tree hashes, the group-commit writer with
//!   its two durability classes, torn-tail recovery, and the spool through
//!   which other processes hand events to the writer.
//! - [`verify`], [`proof`], [`bundle`], [`retention`]: offline
//!   verification, proofs in a documented JSON format, export bundles and
//!   retention with archival.
//! - [`ocsf`], [`sink`], [`index`]: OCSF-shaped export to a file and to
//!   syslog over TLS with persisted cursors, and the search index.
//!
//! What this crate must never do:
//!
//! - panic, whatever the input: every parser and verifier returns a typed
//!   error;
//! - hash leaves or nodes without their domain-separation prefix;
//! - accept a proof by any rule looser than the RFC 9162 algorithms
//!   (§2.1.3.2 and §2.1.4.2);
//! - acknowledge a durable event before it is on disk;
//! - use `unsafe` code, or a cryptographic backend other than `aws-lc-rs`.

pub mod bench;
pub mod bundle;
pub mod clock;
pub mod event;
pub mod index;
pub mod log;
pub mod merkle;
pub mod note;
pub mod ocsf;
pub mod proof;
pub mod reader;
pub mod retention;
pub mod segment;
pub mod sink;
pub mod spool;
pub mod tree;
pub mod verify;

pub use clock::{Clock, ClockSync, FixedClock, SyncSource, SystemClock, Timestamp};
pub use event::{Actor, ActorKind, AuditEvent, Decision, FieldSealer, PayloadValue};
pub use merkle::{
    consistency_path_with, consistency_proof, consistency_proof_with, empty_root,
    inclusion_path_with, inclusion_proof, inclusion_proof_with, leaf_hash, node_hash, root_of,
    verify_consistency, verify_inclusion, Hash, MerkleError, MerkleTree, HASH_LEN,
};
