#!/usr/bin/env python3
"""Regenerate fuzz/seeds/ from crates/sip/testdata (run from anywhere).

Seeds are committed; re-run this only when the testdata or the hand-written
seeds below change, then commit the result. The grown corpus lives in
fuzz/corpus/ (gitignored) and is never written here.
"""
import hashlib
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "crates" / "sip" / "testdata"
SEEDS = ROOT / "fuzz" / "seeds"

# Hand-written messages that walk every proxy edit (Route, Record-Route,
# Max-Forwards, several Vias, a body) and a stream with pipelining.
INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::10]:5070;branch=z9hG4bK1;received=192.0.2.1;rport=5070\r\n"
    b"Route: <sip:edge.example.net;lr>, <sip:core.example.net;lr;transport=tcp>\r\n"
    b"Record-Route: <sip:rr.example.net;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 31\r\n"
    b"\r\n"
    b"v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\n"
)
RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"v: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnashds8\r\n"
    b"v: SIP/2.0/UDP client.example.com;branch=z9hG4bK776asdhds\r\n"
    b"f: <sip:alice@example.com>;tag=1928301774\r\n"
    b"t: <sip:bob@example.com>;tag=a6c85cf\r\n"
    b"i: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    b"l: 0\r\n"
    b"\r\n"
)
OPTIONS = (
    b"OPTIONS sip:[2001:db8::10]:5070;transport=tcp SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1];branch=z9hG4bKping\r\n"
    b"Max-Forwards: 1\r\n"
    b"From: <sip:health@edge.example.net>;tag=hc1\r\n"
    b"To: <sip:[2001:db8::10]:5070>\r\n"
    b"Call-ID: hc-0001\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
MESSAGES = {
    "edge-invite-routes-body.sip": INVITE,
    "edge-response-compact-rr.sip": RESPONSE,
    "edge-options-ipv6.sip": OPTIONS,
}

URIS = {
    "sip-plain": b"sip:alice@atlanta.example.com",
    "sip-host-only": b"sip:example.com",
    "sip-password-port-params-headers": b"sip:alice:pw@example.com:5070;transport=udp;lr?Subject=hi&X=1",
    "sip-uppercase-scheme": b"SIP:Bob@Biloxi.Example.COM;Transport=TCP",
    "sips-plain": b"sips:bob@biloxi.example.com",
    "sips-ipv4-port": b"sips:192.0.2.1:5061",
    "sip-ipv4": b"sip:192.0.2.254;lr",
    "sip-ipv6-port": b"sip:[2001:db8::10]:5070",
    "sip-ipv6-user": b"sip:user@[2001:db8::10]",
    "sip-ipv6-port-inside-brackets": b"sip:user@[2001:db8::10:5070]",
    "sip-ipv6-three-colons": b"sip:user@[2001:db8:::192.0.2.1]",
    "sip-ipv4-mapped-ipv6": b"sip:[::ffff:192.0.2.10]",
    "sip-ipv6-unbracketed": b"sip:2001:db8::10",
    "sip-escaped-user": b"sip:sips%3Auser%40example.com@example.net",
    "sip-escaped-null-user": b"sip:%00bob@example.com",
    "sip-semicolon-user": b"sip:user;par=u%40example.net@example.com",
    "sip-unusual-user-password": b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
    "sip-escaped-params": b"sip:user@example.com;name=value%41;maddr=239.255.255.1;ttl=15",
    "sip-escaped-headers": b"sip:user@example.com?Route=%3Csip:example.com%3E",
    "sip-user-phone": b"sip:+12125551212@gw.example.com;user=phone",
    "sip-lr-method": b"sip:proxy.example.net;lr;method=INVITE;maddr=10.0.0.1",
    "sip-bad-escape": b"sip:a%4@h",
    "sip-empty-param": b"sip:host;;lr",
    "sip-port-too-big": b"sip:host:99999",
    "tel-global": b"tel:+44-20-7946-0999",
    "tel-local-context": b"tel:7042;phone-context=example.com",
    "tel-params": b"tel:+1-201-555-0123;ext=1234;isub=5678",
    "urn-service-sos": b"urn:service:sos",
    "urn-service-sos-fire": b"urn:service:sos.fire",
    "other-soap-beep": b"soap.beep://192.0.2.103:3002",
    "other-unknown-scheme": b"nobodyKnowsThisScheme:totallyopaquecontent",
    "other-http": b"http://example.com/path?q=1#frag",
    "other-mailto": b"mailto:alice@example.com",
}


def testdata_files():
    for sub in ("rfc4475", "rfc4475/derived", "rfc5118"):
        for p in sorted((TESTDATA / sub).glob("*.dat")):
            yield sub.replace("/", "-") + "-" + p.stem, p.read_bytes()


def fresh(target):
    d = SEEDS / target
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def main():
    messages = list(testdata_files()) + [
        (name.removesuffix(".sip"), data) for name, data in MESSAGES.items()
    ]

    for target in ("parse_message", "roundtrip"):
        d = fresh(target)
        for name, data in messages:
            (d / f"{name}.sip").write_bytes(data)

    # stream_framing: the first byte picks the chunk sizes; vary it so the
    # seeds cut messages at different places.
    d = fresh("stream_framing")
    for name, data in messages:
        chunk = hashlib.sha256(name.encode()).digest()[0]
        (d / f"{name}.stream").write_bytes(bytes([chunk]) + data)
    ping = b"\r\n\r\n"
    pipelined = INVITE + ping + b"\r\n" + RESPONSE + ping + ping + OPTIONS + b"\r\n"
    for chunk in (0, 13, 90):
        (d / f"pipelined-keepalives-chunk{chunk}.stream").write_bytes(bytes([chunk]) + pipelined)
    (d / "keepalives-only.stream").write_bytes(b"\x05" + ping * 3 + b"\r\n")
    (d / "truncated-body.stream").write_bytes(b"\x02" + INVITE[:-5])

    d = fresh("uri")
    seen = set()
    for name, data in URIS.items():
        seen.add(data)
        (d / f"{name}.uri").write_bytes(data)
    for name, data in testdata_files():
        line = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        parts = line.split(b" ")
        if line.startswith(b"SIP/") or len(parts) < 3:
            continue
        ruri = next((p for p in parts[1:] if p), b"")
        if ruri and ruri not in seen:
            seen.add(ruri)
            (d / f"ruri-{name}.uri").write_bytes(ruri)


if __name__ == "__main__":
    main()
