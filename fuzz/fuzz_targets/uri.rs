#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lifeline_sip::fuzzing::uri(data));
