#![no_main]
// The property lives in pmtp-fuzzing (fuzzing/src), shared with the stable in-suite run.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pmtp_fuzzing::relabel(data));
