//! The RFC 9162 §2.1 Merkle tree: hashing, an incremental tree, proof
//! generation and proof verification.
//!
//! Indices and sizes are `u64`, as in RFC 9162. Every function returns a
//! [`MerkleError`] instead of panicking on malformed input.

use aws_lc_rs::digest::{Context, SHA256};

/// Length in bytes of a SHA-256 hash.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; HASH_LEN];

/// Domain-separation prefix of leaf hashes (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not inside the tree (`index >= tree_size`).
    #[error("leaf index {index} is out of range for tree size {tree_size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The size of the tree.
        tree_size: u64,
    },
    /// A proof was requested for a tree larger than the leaves supplied.
    #[error("tree size {tree_size} exceeds the {available} leaves available")]
    TreeSizeExceedsLeaves {
        /// The requested tree size.
        tree_size: u64,
        /// How many leaves were supplied.
        available: u64,
    },
    /// The leaf source did not return the leaf at this index.
    #[error("leaf {index} is missing from the leaf source")]
    MissingLeaf {
        /// The index of the missing leaf.
        index: u64,
    },
    /// The old tree is larger than the new tree.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder {
        /// The old (first) tree size.
        old_size: u64,
        /// The new (second) tree size.
        new_size: u64,
    },
    /// A consistency proof from the empty tree was requested or given; it
    /// proves nothing and is rejected.
    #[error("consistency with the empty tree is not defined")]
    EmptyOldTree,
    /// The proof is empty where RFC 9162 requires at least one hash.
    #[error("the proof is empty")]
    EmptyProof,
    /// The proof has more hashes than the tree sizes allow.
    #[error("the proof is too long")]
    ProofTooLong,
    /// The proof has fewer hashes than the tree sizes require.
    #[error("the proof is too short")]
    ProofTooShort,
    /// The root computed from the proof differs from the expected root
    /// (for consistency proofs: the new root).
    #[error("the computed root does not match the expected root")]
    RootMismatch,
    /// The old root computed from a consistency proof differs from the
    /// expected old root.
    #[error("the computed old root does not match the expected old root")]
    OldRootMismatch,
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full")]
    TreeFull,
    /// A compact range whose number of roots does not match its size.
    #[error("{roots} subtree roots do not describe a tree of {size} leaves")]
    FrontierMismatch {
        /// The claimed tree size.
        size: u64,
        /// The number of roots given.
        roots: usize,
    },
}

/// Hashes a log entry into a leaf hash: `SHA-256(0x00 || entry)`.
#[must_use]
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(entry);
    finish(ctx)
}

/// Hashes two children into their parent: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[NODE_PREFIX]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// The root of the empty tree: SHA-256 of the empty string.
#[must_use]
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

fn finish(ctx: Context) -> Hash {
    let digest = ctx.finish();
    let mut out = [0u8; HASH_LEN];
    for (o, b) in out.iter_mut().zip(digest.as_ref()) {
        *o = *b;
    }
    out
}

/// An incrementally built Merkle tree that keeps only the roots of its
/// perfect subtrees (a compact range from index 0), so it needs
/// O(log n) memory to compute the root of n leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first; one per set
    /// bit of `size`.
    stack: Vec<Hash>,
}

impl MerkleTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from a list of leaf hashes.
    #[must_use]
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            // A slice holds fewer than 2^63 elements, so the tree cannot
            // become full here.
            if tree.push(*leaf).is_err() {
                break;
            }
        }
        tree
    }

    /// A tree of `size` leaves given by the roots of its perfect subtrees,
    /// largest first (a compact range, e.g. stored at a segment start).
    ///
    /// # Errors
    ///
    /// [`MerkleError::FrontierMismatch`] unless there is one root per set
    /// bit of `size`.
    pub fn from_subtree_roots(size: u64, roots: Vec<Hash>) -> Result<Self, MerkleError> {
        if roots.len() != size.count_ones() as usize {
            return Err(MerkleError::FrontierMismatch {
                size,
                roots: roots.len(),
            });
        }
        Ok(Self { size, stack: roots })
    }

    /// Appends a leaf hash and returns its index.
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeFull`] if the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, MerkleError> {
        self.push_with(leaf, |_| {})
    }

    /// Like [`MerkleTree::push`]; `on_node` receives the leaf hash and then
    /// each parent node the leaf completes, bottom up (the post-order of
    /// the tree: what a node store appends).
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeFull`] if the tree already holds `u64::MAX` leaves.
    pub fn push_with(
        &mut self,
        leaf: Hash,
        mut on_node: impl FnMut(&Hash),
    ) -> Result<u64, MerkleError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(MerkleError::TreeFull)?;
        on_node(&leaf);
        let mut hash = leaf;
        let mut bits = index;
        while bits & 1 == 1 {
            match self.stack.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                // Unreachable: the stack holds one root per set bit of size.
                None => break,
            }
            on_node(&hash);
            bits >>= 1;
        }
        self.stack.push(hash);
        self.size = new_size;
        Ok(index)
    }

    /// Hashes a log entry with [`leaf_hash`], appends it and returns its
    /// index.
    ///
    /// # Errors
    ///
    /// [`MerkleError::TreeFull`] if the tree already holds `u64::MAX` leaves.
    pub fn append_entry(&mut self, entry: &[u8]) -> Result<u64, MerkleError> {
        self.push(leaf_hash(entry))
    }

    /// The number of leaves in the tree.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the tree (RFC 9162 §2.1.1); the empty tree
    /// has root [`empty_root`].
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut roots = self.stack.iter().rev();
        match roots.next() {
            None => empty_root(),
            Some(last) => roots.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// The roots of the perfect subtrees, largest (leftmost) first.
    #[must_use]
    pub fn subtree_roots(&self) -> &[Hash] {
        &self.stack
    }
}

/// The Merkle Tree Hash of a list of leaf hashes (RFC 9162 §2.1.1).
#[must_use]
pub fn root_of(leaves: &[Hash]) -> Hash {
    MerkleTree::from_leaves(leaves).root()
}

fn slice_source(leaves: &[Hash]) -> impl Fn(u64) -> Option<Hash> + '_ {
    |i| usize::try_from(i).ok().and_then(|i| leaves.get(i)).copied()
}

fn check_available(leaves: &[Hash], tree_size: u64) -> Result<(), MerkleError> {
    let available = u64::try_from(leaves.len()).unwrap_or(u64::MAX);
    if tree_size > available {
        return Err(MerkleError::TreeSizeExceedsLeaves {
            tree_size,
            available,
        });
    }
    Ok(())
}

/// The largest power of two strictly smaller than `n`; `n` must be at
/// least 2 (for smaller `n` this returns 1).
pub(crate) fn split_point(n: u64) -> u64 {
    if n < 2 {
        return 1;
    }
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of leaves `start .. start + n`.
fn range_root<F>(get_leaf: &F, start: u64, n: u64) -> Result<Hash, MerkleError>
where
    F: Fn(u64) -> Option<Hash>,
{
    let mut tree = MerkleTree::new();
    for index in start..start.saturating_add(n) {
        let leaf = get_leaf(index).ok_or(MerkleError::MissingLeaf { index })?;
        tree.push(leaf)?;
    }
    Ok(tree.root())
}

/// RFC 9162 §2.1.3.1 PATH(index, D[0 .. size]), iteratively: the subtree
/// roots come from `range_root(start, n)` (the Merkle Tree Hash of leaves
/// `start .. start + n`), so a caller with stored interior nodes needs
/// O(log n) reads, and one with only leaves hashes them. The one
/// implementation of PATH in the crate.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] if `index >= size`, or `range_root`'s
/// error.
pub fn inclusion_path_with<E, R>(mut range_root: R, index: u64, size: u64) -> Result<Vec<Hash>, E>
where
    R: FnMut(u64, u64) -> Result<Hash, E>,
    E: From<MerkleError>,
{
    if index >= size {
        return Err(MerkleError::IndexOutOfRange {
            index,
            tree_size: size,
        }
        .into());
    }
    let mut out = Vec::new();
    let (mut m, mut start, mut n) = (index, 0u64, size);
    // Siblings are found top-down; the proof lists them bottom-up.
    while n > 1 {
        let k = split_point(n);
        if m < k {
            out.push(range_root(start + k, n - k)?);
            n = k;
        } else {
            out.push(range_root(start, k)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    out.reverse();
    Ok(out)
}

/// RFC 9162 §2.1.4.1 PROOF(old_size, D[0 .. new_size]) (SUBPROOF with
/// b = true), iteratively, with subtree roots from `range_root` as in
/// [`inclusion_path_with`]. Empty when the sizes are equal. The one
/// implementation of SUBPROOF in the crate.
///
/// # Errors
///
/// [`MerkleError::SizesOutOfOrder`] if `old_size > new_size`,
/// [`MerkleError::EmptyOldTree`] if `old_size == 0`, or `range_root`'s
/// error.
pub fn consistency_path_with<E, R>(
    mut range_root: R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, E>
where
    R: FnMut(u64, u64) -> Result<Hash, E>,
    E: From<MerkleError>,
{
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old_size, new_size }.into());
    }
    if old_size == 0 {
        return Err(MerkleError::EmptyOldTree.into());
    }
    let mut out = Vec::new();
    let (mut m, mut start, mut n, mut complete) = (old_size, 0u64, new_size, true);
    while m < n {
        let k = split_point(n);
        if m <= k {
            out.push(range_root(start + k, n - k)?);
            n = k;
        } else {
            out.push(range_root(start, k)?);
            m -= k;
            start += k;
            n -= k;
            complete = false;
        }
    }
    if !complete {
        out.push(range_root(start, n)?);
    }
    out.reverse();
    Ok(out)
}

/// The inclusion proof (audit path, RFC 9162 §2.1.3.1) of leaf `index` in
/// the tree made of the first `tree_size` of `leaves`.
///
/// # Errors
///
/// [`MerkleError::TreeSizeExceedsLeaves`] if `tree_size > leaves.len()`,
/// [`MerkleError::IndexOutOfRange`] if `index >= tree_size`.
pub fn inclusion_proof(
    leaves: &[Hash],
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    check_available(leaves, tree_size)?;
    inclusion_proof_with(slice_source(leaves), index, tree_size)
}

/// Like [`inclusion_proof`], reading leaf hashes through `get_leaf(i)`,
/// which returns `None` for a leaf it does not have.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] if `index >= tree_size`,
/// [`MerkleError::MissingLeaf`] if `get_leaf` returns `None` for a needed
/// leaf.
pub fn inclusion_proof_with<F>(
    get_leaf: F,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, MerkleError>
where
    F: Fn(u64) -> Option<Hash>,
{
    inclusion_path_with(|start, n| range_root(&get_leaf, start, n), index, tree_size)
}

/// The consistency proof (RFC 9162 §2.1.4.1) between the tree of the first
/// `old_size` and the tree of the first `new_size` of `leaves`. It is empty
/// when the sizes are equal.
///
/// # Errors
///
/// [`MerkleError::TreeSizeExceedsLeaves`] if `new_size > leaves.len()`,
/// [`MerkleError::SizesOutOfOrder`] if `old_size > new_size`,
/// [`MerkleError::EmptyOldTree`] if `old_size == 0`.
pub fn consistency_proof(
    leaves: &[Hash],
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, MerkleError> {
    check_available(leaves, new_size)?;
    consistency_proof_with(slice_source(leaves), old_size, new_size)
}

/// Like [`consistency_proof`], reading leaf hashes through `get_leaf(i)`,
/// which returns `None` for a leaf it does not have.
///
/// # Errors
///
/// [`MerkleError::SizesOutOfOrder`] if `old_size > new_size`,
/// [`MerkleError::EmptyOldTree`] if `old_size == 0`,
/// [`MerkleError::MissingLeaf`] if `get_leaf` returns `None` for a needed
/// leaf.
pub fn consistency_proof_with<F>(
    get_leaf: F,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, MerkleError>
where
    F: Fn(u64) -> Option<Hash>,
{
    consistency_path_with(
        |start, n| range_root(&get_leaf, start, n),
        old_size,
        new_size,
    )
}

/// Verifies an inclusion proof with the algorithm of RFC 9162 §2.1.3.2:
/// that `leaf_hash` is leaf `index` of the tree of size `tree_size` whose
/// root is `root`.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] if `index >= tree_size`,
/// [`MerkleError::ProofTooLong`] / [`MerkleError::ProofTooShort`] if the
/// proof length does not fit the tree, [`MerkleError::RootMismatch`] if the
/// computed root differs from `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // Step 1.
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange { index, tree_size });
    }
    // Steps 2 and 3.
    let mut fnode = index;
    let mut snode = tree_size - 1;
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if snode == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    if snode != 0 {
        return Err(MerkleError::ProofTooShort);
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof with the algorithm of RFC 9162 §2.1.4.2:
/// that the tree of size `old_size` with root `old_root` is a prefix of the
/// tree of size `new_size` with root `new_root`.
///
/// When the sizes are equal the proof must be empty and the roots equal.
/// A consistency proof from the empty tree proves nothing and is rejected.
///
/// # Errors
///
/// [`MerkleError::SizesOutOfOrder`] if `old_size > new_size`,
/// [`MerkleError::EmptyOldTree`] if `old_size == 0`,
/// [`MerkleError::EmptyProof`], [`MerkleError::ProofTooLong`] or
/// [`MerkleError::ProofTooShort`] if the proof length does not fit the
/// sizes, [`MerkleError::OldRootMismatch`] / [`MerkleError::RootMismatch`]
/// if a computed root differs from the given one.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 {
        return Err(MerkleError::EmptyOldTree);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::ProofTooLong);
        }
        if old_root != new_root {
            return Err(MerkleError::RootMismatch);
        }
        return Ok(());
    }
    // Now 0 < old_size < new_size. Step 1.
    if proof.is_empty() {
        return Err(MerkleError::EmptyProof);
    }
    // Step 2: if old_size is a power of two, the old root is the first
    // hash of the path.
    let prefix = old_size.is_power_of_two().then_some(old_root);
    let mut path = prefix.into_iter().chain(proof);
    // Step 3.
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    // Step 4.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let first = path.next().ok_or(MerkleError::EmptyProof)?;
    let mut fr = *first;
    let mut sr = *first;
    // Step 6.
    for c in path {
        if snode == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(MerkleError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}
