//! Everything a client controls, through everything the filter does with it: see
//! `kasi_filter::fuzzing::check_request`, which the regression test replays too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kasi_filter::fuzzing::check_request(data));
