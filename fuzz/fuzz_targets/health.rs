#![no_main]
// Random sequences of probe answers, losses, live outcomes, drains, overload
// and time steps against the trunk health checker (see lifeline_health::fuzzing).
libfuzzer_sys::fuzz_target!(|data: &[u8]| lifeline_health::fuzzing::run(data));
