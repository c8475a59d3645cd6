//! Fuzz target: the XML decoder on arbitrary bytes; re-encoding what it accepts must decode again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omadm::element::Limits;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = omadm::xml::decode(data, &Limits::default()) {
        let again = omadm::xml::encode(&root);
        assert!(omadm::xml::decode(&again, &Limits::default()).is_ok());
    }
});
