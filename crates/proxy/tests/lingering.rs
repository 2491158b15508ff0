//! What is left of a call once its transactions have their final responses
//! (RFC 3261 Timers J and K, RFC 6026 Timers L and M): no call record, and
//! every retransmission still handled as the RFCs say.

mod support;

use std::time::Duration;

use bytes::Bytes;
use lifeline_proxy::Peer;
use lifeline_sip::{Message, MessageWriter};
use support::{addr, emergency_and_default, Bench, CALLER, EMERGENCY_INVITE, TRUNK};

fn from_trunk(b: &mut Bench, m: Bytes) {
    b.now += Duration::from_millis(1);
    b.proxy.handle_message(b.now, Peer::udp(addr(TRUNK)), m);
    b.drain();
}

/// What was sent to `who` since the last look.
fn fresh(b: &mut Bench, who: &str) -> Vec<Bytes> {
    let (to, rest) = std::mem::take(&mut b.sent)
        .into_iter()
        .partition::<Vec<_>, _>(|t| t.peer.addr == addr(who));
    let _ = rest;
    to.into_iter().map(|t| t.payload).collect()
}

/// The caller's `method` in the dialog the relayed 2xx `ok` established.
fn in_dialog(ok: &Message, method: &str, seq: u32) -> String {
    String::from_utf8(support::in_dialog(ok, method, seq, 1).to_vec()).unwrap()
}

#[test]
fn a_finished_call_lingers_without_its_call_and_answers_retransmissions() {
    let mut b = Bench::new(emergency_and_default());
    b.send(CALLER, EMERGENCY_INVITE);
    let fwd = Message::parse(fresh(&mut b, TRUNK).pop().unwrap()).unwrap();
    fresh(&mut b, CALLER);
    let ok = MessageWriter::dialog_response_to(&fwd, 200, "OK", b"t", b"<sip:t@trunk>")
        .unwrap()
        .finish();
    from_trunk(&mut b, ok.clone());
    let relayed = fresh(&mut b, CALLER);
    assert_eq!(relayed.len(), 1);
    let st = b.proxy.stats();
    assert_eq!(
        (
            st.calls,
            st.lingering,
            st.server_transactions,
            st.client_transactions
        ),
        (0, 2, 1, 1),
        "the call record went with the 200; both INVITE transactions linger"
    );

    // RFC 6026: the trunk's 2xx retransmission passes to the caller.
    from_trunk(&mut b, ok.clone());
    assert_eq!(
        fresh(&mut b, CALLER),
        relayed,
        "forwarded again, Via popped"
    );
    // The caller's INVITE retransmission is absorbed (Accepted), and a
    // CANCEL after the 2xx matches it: 200, nothing else.
    let absorbed = st.retransmissions_absorbed;
    b.send(CALLER, EMERGENCY_INVITE);
    assert!(b.sent.is_empty());
    assert_eq!(b.proxy.stats().retransmissions_absorbed, absorbed + 1);
    let cancel = EMERGENCY_INVITE
        .replacen("INVITE urn:service:sos", "CANCEL urn:service:sos", 1)
        .replace("CSeq: 31862 INVITE", "CSeq: 31862 CANCEL");
    let cancel = cancel.split("\r\n\r\n").next().unwrap().to_string() + "\r\n\r\n";
    let cancel = cancel.replace("Content-Length: 1395", "Content-Length: 0");
    b.send(CALLER, &cancel);
    let answers = fresh(&mut b, CALLER);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        Message::parse(answers[0].clone()).unwrap().status(),
        Some(200)
    );
    assert!(fresh(&mut b, TRUNK).is_empty(), "nothing to cancel");

    // ACK and BYE; the trunk's 200 to the BYE.
    let ok = Message::parse(relayed[0].clone()).unwrap();
    b.send(CALLER, &in_dialog(&ok, "ACK", 31862));
    let bye = in_dialog(&ok, "BYE", 31863);
    b.send(CALLER, &bye);
    let fwd_bye = fresh(&mut b, TRUNK);
    assert_eq!(fwd_bye.len(), 2, "ACK and BYE forwarded");
    let fwd_bye = Message::parse(fwd_bye[1].clone()).unwrap();
    let bye_ok = MessageWriter::response_to(&fwd_bye, 200, "OK", None)
        .unwrap()
        .finish();
    from_trunk(&mut b, bye_ok.clone());
    let sent = fresh(&mut b, CALLER);
    assert_eq!(sent.len(), 1);
    let st = b.proxy.stats();
    // (The two INVITE transactions, the CANCEL's and the BYE's two.)
    assert_eq!((st.calls, st.dialogs, st.lingering), (0, 0, 5), "{st:?}");

    // Timer J: the BYE retransmitted gets the very response sent (the same
    // bytes, not a copy).
    b.send(CALLER, &bye);
    let again = fresh(&mut b, CALLER);
    assert_eq!(again, sent);
    assert_eq!(again[0].as_ptr(), sent[0].as_ptr());
    // Timer K: the trunk's retransmitted 200 is absorbed; the same from
    // another port matches nothing.
    let dropped = b.proxy.stats().responses_dropped;
    from_trunk(&mut b, bye_ok.clone());
    assert!(b.sent.is_empty());
    assert_eq!(b.proxy.stats().responses_dropped, dropped);
    b.now += Duration::from_millis(1);
    b.proxy
        .handle_message(b.now, Peer::udp(addr("127.0.30.1:5999")), bye_ok);
    b.drain();
    assert_eq!(b.proxy.stats().responses_dropped, dropped + 1);

    // 64 x T1 later everything has ended; the same BYE is a new request,
    // for a dialog that no longer exists.
    b.advance(Duration::from_millis(32_000));
    let st = b.proxy.stats();
    assert_eq!(
        (st.lingering, st.server_transactions, st.client_transactions),
        (0, 0, 0)
    );
    assert!(b.proxy.is_idle());
    b.send(CALLER, &bye);
    let answers = fresh(&mut b, CALLER);
    assert_eq!(
        Message::parse(answers[0].clone()).unwrap().status(),
        Some(481)
    );
}
