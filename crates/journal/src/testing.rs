//! Sample records for tests and benchmarks, here and in the crates that
//! read journals: one typical emergency call, connected or failed.

use crate::record::{
    AttemptRecord, AttemptResult, CallOutcome, CallRecord, Caller, EmergencyRule, FailReason,
    LocationRecord, Micros, WallTime,
};

/// A typical emergency call that failed over once and connected: Alice
/// dials `urn:service:sos` from `udp:192.0.2.7:5060` (route `emergency`),
/// with her location by reference and as PIDF-LO; `primary` leaves the
/// INVITE unanswered for 200 ms, then `backup` connects the call 50 ms later
/// (set up in 250 ms).
pub fn connected_call(started: WallTime, call_id: String) -> CallRecord {
    CallRecord {
        started,
        ended: started.plus(Micros(250_000)),
        call_id,
        caller: Caller {
            from_uri: "sip:+447700900123@origin.example".into(),
            from_display: Some("\"Alice Example\"".into()),
            asserted_identities: vec![
                "<sip:+447700900123@origin.example;user=phone>".into(),
                "<tel:+447700900123>".into(),
            ],
        },
        dialled: "urn:service:sos".into(),
        emergency: Some(EmergencyRule::SosUrn),
        location: LocationRecord {
            geolocation: vec!["<cid:target123@origin.example>".into()],
            pidf_lo: true,
        },
        route: "emergency".into(),
        source: "udp:192.0.2.7:5060".into(),
        attempts: vec![
            AttemptRecord {
                trunk: "primary".into(),
                attempt: 1,
                offset: Micros(0),
                result: AttemptResult::NoResponse,
                elapsed: Some(Micros(200_000)),
                late_status: None,
            },
            AttemptRecord {
                trunk: "backup".into(),
                attempt: 2,
                offset: Micros(200_000),
                result: AttemptResult::Connected,
                elapsed: Some(Micros(50_000)),
                late_status: None,
            },
        ],
        outcome: CallOutcome::Connected {
            trunk: "backup".into(),
        },
        setup: Some(Micros(250_000)),
        notes: Vec::new(),
    }
}

/// The call of [`connected_call`], but `backup` answers `status` after 5 ms:
/// every trunk failed, and the caller got `status` 400 ms after the INVITE.
/// An emergency call for the callback list.
pub fn failed_call(started: WallTime, call_id: String, status: u16) -> CallRecord {
    let mut call = connected_call(started, call_id);
    call.ended = started.plus(Micros(400_000));
    if let Some(backup) = call.attempts.get_mut(1) {
        backup.result = AttemptResult::Response(status);
        backup.elapsed = Some(Micros(5_000));
    }
    call.outcome = CallOutcome::Failed {
        status,
        reason: FailReason::AllTrunksFailed,
    };
    call.setup = None;
    call
}
