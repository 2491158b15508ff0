use super::*;

#[test]
fn names() {
    assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
    assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
    assert_eq!(HeaderName::from_bytes(b"ViA"), HeaderName::Via);
    assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
    assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
    assert_eq!(
        HeaderName::from_bytes(b"MaX-fOrWaRdS"),
        HeaderName::MaxForwards
    );
    assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
    assert_eq!(HeaderName::from_bytes(b"q"), HeaderName::Other);
    assert_eq!(HeaderName::Via.compact(), Some(b'v'));
    assert_eq!(HeaderName::CSeq.compact(), None);
}

fn one(line: &[u8]) -> Result<Header<'_>, Error> {
    match scan_header(line, 0)? {
        Scanned::Header(h, _) => Ok(h),
        Scanned::End(_) => panic!("end"),
    }
}

/// Where the first control character a header value may not hold is.
fn control(line: &[u8]) -> Option<usize> {
    match scan_header(line, 0) {
        Ok(Scanned::Header(_, c)) => c,
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn control_characters_in_values() {
    assert_eq!(control(b"Subject: a\x00b\r\n"), Some(10));
    assert_eq!(control(b"Subject: ab\x7f\r\n"), Some(11));
    assert_eq!(control(b"X-Whatever: ok\x1b[0m\r\n"), Some(14));
    assert_eq!(control(b"X-Whatever:\x01\r\n"), Some(11));
    assert_eq!(control(b"s: first line\r\n \x0bfolded\r\n"), Some(16));
    // The first of several.
    assert_eq!(control(b"s: \x01\x02\x03\r\n"), Some(3));
    // HT anywhere, folds, and UTF-8 are text.
    assert_eq!(control(b"Subject: \ttab\there\t\r\n"), None);
    assert_eq!(control(b"Subject: a\r\n\tb\r\n c\r\n"), None);
    assert_eq!(control("Subject: caf\u{e9} \u{2603}\r\n".as_bytes()), None);
    // A quoted-pair may escape one; qdtext and unquoted text may not.
    assert_eq!(control(b"To: \"a\\\x00b\" <sip:a@b>\r\n"), None);
    assert_eq!(control(b"To: \"a\x00b\" <sip:a@b>\r\n"), Some(6));
    assert_eq!(control(b"To: a\\\x00b <sip:a@b>\r\n"), Some(6));
    assert_eq!(control(b"To: \"a\\\\\x00\" <sip:a@b>\r\n"), Some(8));
    assert_eq!(control(b"To: \"\\\x07\" x \"\\\x00\" \x00\r\n"), Some(16));
    // A long value: the control character past the first sixteen bytes.
    let long = b"Subject: 0123456789abcdef0123456789abcdef\x08\r\n";
    assert_eq!(control(long), Some(41));
}

#[test]
fn folding_and_spacing() {
    let h = one(b"TO :\r\n sip:vivekg@example.com ;   tag = 1\r\nX").unwrap();
    assert_eq!(h.name, HeaderName::To);
    assert_eq!(h.raw_name, b"TO");
    assert_eq!(h.value, b"sip:vivekg@example.com ;   tag = 1");
    assert_eq!(h.value_offset, 7);
    assert_eq!(h.line_end, 43);
    let h = one(b"s :\r\nX").unwrap();
    assert_eq!(h.value, b"");
}

#[test]
fn bad_lines() {
    assert_eq!(
        one(b"Foobar roobar\r\n").unwrap_err().kind(),
        ErrorKind::MissingColon
    );
    assert_eq!(
        one(b"Via\x01: x\r\n").unwrap_err().kind(),
        ErrorKind::BadHeaderName
    );
    assert_eq!(
        one(b": x\r\n").unwrap_err().kind(),
        ErrorKind::BadHeaderName
    );
    assert_eq!(
        one(b"Via: a\nb\r\n").unwrap_err().kind(),
        ErrorKind::BareLineEnd
    );
    assert_eq!(
        one(b"Via: a\rb\r\n").unwrap_err().kind(),
        ErrorKind::BareLineEnd
    );
    assert_eq!(one(b"Via: a").unwrap_err().kind(), ErrorKind::Unterminated);
}

#[test]
fn splitting() {
    let v: Vec<_> = split_values(br#""a, b" <sip:x,y>;p=1 , c,,d"#, 10).collect();
    assert_eq!(
        v,
        vec![
            (10, &br#""a, b" <sip:x,y>;p=1"#[..]),
            (33, &b"c"[..]),
            (35, &b""[..]),
            (36, &b"d"[..])
        ]
    );
    assert_eq!(split_values(b"", 0).count(), 0);
    assert_eq!(split_values(br#""a\",b", c"#, 0).count(), 2);
}
