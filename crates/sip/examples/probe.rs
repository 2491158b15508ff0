use rsip::prelude::*;
fn main() {
    for f in std::env::args().skip(1) {
        let data = std::fs::read(&f).unwrap();
        match rsip::SipMessage::try_from(&data[..]) {
            Err(e) => println!("{f}: rsip ERR {e:?}"),
            Ok(m) => {
                println!("{f}: rsip OK");
                if let rsip::SipMessage::Request(r) = &m { println!("  uri {:?} / {}", r.uri, r.uri); }
                println!("  via {:?}", m.via_header().map(|v| v.typed()));
                println!("  from {:?}", m.from_header().map(|v| v.typed()));
                println!("  to {:?}", m.to_header().map(|v| v.typed()));
                println!("  cseq {:?}", m.cseq_header().map(|v| v.typed()));
                println!("  callid {:?}", m.call_id_header());
            }
        }
        let m = lifeline_sip::Message::parse(bytes::Bytes::from(data));
        match m { Ok(m) => println!("  lifeline OK validate={:?} body={} cl={:?}", lifeline_sip::validate(&m), m.body().len(), m.content_length()), Err(e) => println!("  lifeline ERR {e:?}") }
    }
}
