//! The attachment hash tree: RFC 9162's Merkle tree, its proofs, and what they refuse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use peerchat_shared::chunk_tree::{
    chunk_count, chunk_len, leaf_hash, verify_chunk, ChunkTree, FileHasher, Hash, CHUNK_BYTES,
};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

/// RFC 9162 section 2.1.1, as written: the reference the tree is checked against.
fn rfc_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [leaf] => *leaf,
        _ => {
            let k = 1 << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
            Sha256::new()
                .chain_update([0x01])
                .chain_update(rfc_root(&leaves[..k]))
                .chain_update(rfc_root(&leaves[k..]))
                .finalize()
                .into()
        }
    }
}

fn file(size: usize) -> Vec<u8> {
    (0..size).map(|index| (index * 7 % 251) as u8).collect()
}

fn tree_of(bytes: &[u8]) -> ChunkTree {
    let leaves = if bytes.is_empty() {
        vec![]
    } else {
        bytes.chunks(CHUNK_BYTES).map(leaf_hash).collect()
    };
    ChunkTree::from_leaves(leaves)
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn the_roots_match_rfc_9162_published_shape() {
    // The RFC 6962 test tree's leaves (as in its reference implementations): the root over the
    // first 1 to 8 of them.
    let inputs: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    let leaves: Vec<Hash> = inputs.iter().map(|input| leaf_hash(input)).collect();
    let roots: Vec<String> = (1..=8)
        .map(|n| hex(&ChunkTree::from_leaves(leaves[..n].to_vec()).root()))
        .collect();
    assert_eq!(
        roots,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
    );
}

#[test]
fn an_empty_file_has_one_empty_chunk() {
    let tree = tree_of(&[]);
    assert_eq!(chunk_count(0), 1);
    assert_eq!(tree.root(), leaf_hash(&[]));
    assert!(verify_chunk(&tree.root(), 0, 0, &[], &tree.proof(0)));
}

#[test]
fn a_chunk_of_the_wrong_length_or_index_is_refused() {
    let bytes = file(3 * CHUNK_BYTES + 10);
    let tree = tree_of(&bytes);
    let size = bytes.len() as u64;
    let last = &bytes[3 * CHUNK_BYTES..];
    assert!(verify_chunk(&tree.root(), size, 3, last, &tree.proof(3)));
    let padded = [last, &[0]].concat();
    assert!(!verify_chunk(
        &tree.root(),
        size,
        3,
        &padded,
        &tree.proof(3)
    ));
    assert!(!verify_chunk(&tree.root(), size, 4, last, &tree.proof(3)));
    let first = &bytes[..CHUNK_BYTES];
    assert!(!verify_chunk(&tree.root(), size, 1, first, &tree.proof(0)));
    assert_eq!(chunk_len(size, 3), 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_file_hashed_in_pieces_of_any_size_gets_its_sha256_and_tree(
        size in 0usize..(5 * CHUNK_BYTES + 50),
        piece in 1usize..(2 * CHUNK_BYTES),
    ) {
        let bytes = file(size);
        let mut hasher = FileHasher::default();
        for part in bytes.chunks(piece) {
            hasher.update(part);
        }
        let (hashed_size, sha256, tree) = hasher.finish();
        prop_assert_eq!(hashed_size, size as u64);
        prop_assert_eq!(sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        prop_assert_eq!(tree, tree_of(&bytes));
    }

    #[test]
    fn the_tree_built_bottom_up_has_rfc_9162s_root(count in 1usize..300) {
        let leaves: Vec<Hash> = (0..count).map(|index| leaf_hash(&index.to_be_bytes())).collect();
        prop_assert_eq!(ChunkTree::from_leaves(leaves.clone()).root(), rfc_root(&leaves));
    }

    #[test]
    fn every_chunk_proves_itself_and_an_altered_one_does_not(
        size in 0usize..(9 * CHUNK_BYTES + 100),
        flip in any::<prop::sample::Index>(),
    ) {
        let bytes = file(size);
        let tree = tree_of(&bytes);
        let count = chunk_count(size as u64);
        prop_assert_eq!(tree.chunk_count() as u64, count);
        for index in 0..count {
            let start = index as usize * CHUNK_BYTES;
            let chunk = &bytes[start..start + chunk_len(size as u64, index)];
            let proof = tree.proof(index as usize);
            prop_assert!(verify_chunk(&tree.root(), size as u64, index, chunk, &proof));
            if !chunk.is_empty() {
                let mut altered = chunk.to_vec();
                let at = flip.index(altered.len());
                altered[at] ^= 1;
                prop_assert!(!verify_chunk(&tree.root(), size as u64, index, &altered, &proof));
            }
            if proof.len() > 1 {
                let short = &proof[..proof.len() - 1];
                prop_assert!(!verify_chunk(&tree.root(), size as u64, index, chunk, short));
            }
        }
    }
}
