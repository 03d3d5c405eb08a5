//! Test support for the adapter crates (feature `test-support`, never in a shipped build):
//! payload builders and the one contract suite per port.

pub mod connection_contract;
pub mod store_contract;
pub mod testdata;
