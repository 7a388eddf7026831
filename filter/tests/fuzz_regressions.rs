//! Every input the fuzzer ever crashed on (and a few corpus seeds), replayed through the fuzz
//! target's own function: a fixed crash stays fixed, without needing cargo-fuzz to notice.

use std::path::Path;

#[test]
fn every_kept_fuzz_input_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/request_policy");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        if std::panic::catch_unwind(|| kasi_filter::fuzzing::check_request(&data)).is_err() {
            panic!("fuzz input {name} fails again ({} bytes)", data.len());
        }
    }
}
