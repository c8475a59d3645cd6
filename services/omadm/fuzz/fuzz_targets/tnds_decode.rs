//! Fuzz target: a TNDS MgmtTree document (XML or WBXML) parsed and applied to an empty tree.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omadm::codec::{self, Encoding};
use omadm::element::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(root) = codec::decode_element(data, Encoding::sniff(data), &limits) {
        if let Ok(tree) = omadm::tnds::MgmtTree::from_element(&root, &limits) {
            let mut t = omadm::tree::Tree::default();
            let _ = tree.apply(&mut t);
        }
    }
});
