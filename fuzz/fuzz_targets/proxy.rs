#![no_main]
// Random calls, cancels, retransmissions, trunk faults, garbage and time steps
// through the whole proxy core in the simulator (see lifeline_sim::fuzzing),
// configured with trunk limits, a hedged emergency route, rescue of every
// ringing call and weighted sharing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| lifeline_sim::fuzzing::run(data));
