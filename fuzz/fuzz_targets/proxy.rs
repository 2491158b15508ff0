#![no_main]
// Random calls, cancels, retransmissions, trunk faults, garbage and time steps
// through the whole proxy core in the simulator (see lifeline_sim::fuzzing).
libfuzzer_sys::fuzz_target!(|data: &[u8]| lifeline_sim::fuzzing::run(data));
