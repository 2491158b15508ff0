#![no_main]
// Random sequences of probe answers, losses, live outcomes, drains, overload,
// time steps, call progress samples, reconfigurations (canary settings) and
// selections with canary tickets against the trunk health checker (see
// lifeline_health::fuzzing).
libfuzzer_sys::fuzz_target!(|data: &[u8]| lifeline_health::fuzzing::run(data));
