//! Rampart audit log primitives.
//!
//! This crate implements the Merkle tree of RFC 9162 (Certificate
//! Transparency version 2.0), §2.1: leaf and node hashing with the
//! `0x00` / `0x01` domain-separation prefixes, an incremental tree that
//! keeps only the roots of its perfect subtrees, and the generation and
//! verification of inclusion and consistency proofs.
//!
//! It is the foundation of Rampart's tamper-evident audit log: the log
//! stores leaf hashes, publishes tree heads (size and root), and hands out
//! proofs that any client can check with the verifiers here.
//!
//! What this crate must never do:
//!
//! - panic, whatever the input: every verifier returns a typed
//!   [`MerkleError`] for out-of-range indices, zero or inverted sizes, and
//!   proofs that are too long or too short;
//! - hash leaves or nodes without their domain-separation prefix (that
//!   would allow second-preimage attacks that pass an interior node off as
//!   a leaf);
//! - accept a proof by any rule looser than the RFC 9162 algorithms
//!   (§2.1.3.2 and §2.1.4.2);
//! - use `unsafe` code, or a cryptographic backend other than `aws-lc-rs`.

pub mod merkle;

pub use merkle::{
    consistency_proof, consistency_proof_with, empty_root, inclusion_proof, inclusion_proof_with,
    leaf_hash, node_hash, root_of, verify_consistency, verify_inclusion, Hash, MerkleError,
    MerkleTree, HASH_LEN,
};
