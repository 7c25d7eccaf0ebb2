//! Fuzzes the request-head parser, the framing rules and the chunked decoder.
//! Beyond "no panic": spans stay in bounds, accepted names are tokens and
//! values hold no CR/LF/NUL, every strict prefix of an accepted head is
//! reported incomplete, and whatever net accepts httparse accepts too with
//! the same method, target, header names and values (net is the stricter).

#![no_main]

use libfuzzer_sys::fuzz_target;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fuzz_target!(|data: &[u8]| {
    let mut headers = Vec::new();
    if let Ok(Some(head)) = net::parse::parse_head(data, &mut headers, 100) {
        assert!(head.len <= data.len());
        assert!(head.method.of(data).iter().all(|&b| is_tchar(b)));
        assert!(head
            .target
            .of(data)
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b)));
        for h in &headers {
            let n = h.name.of(data);
            assert!(!n.is_empty() && n.iter().all(|&b| is_tchar(b)));
            let v = h.value.of(data);
            assert!(!v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        }
        let mut again = Vec::new();
        assert_eq!(
            net::parse::parse_head(&data[..head.len - 1], &mut again, 100),
            Ok(None),
            "a strict prefix of a complete head must be incomplete"
        );

        let mut hh = [httparse::EMPTY_HEADER; 100];
        let mut r = httparse::Request::new(&mut hh);
        match r.parse(&data[..head.len]) {
            Ok(httparse::Status::Complete(n)) => {
                assert_eq!(n, head.len);
                assert_eq!(r.method.unwrap().as_bytes(), head.method.of(data));
                assert_eq!(r.path.unwrap().as_bytes(), head.target.of(data));
                assert_eq!(r.headers.len(), headers.len());
                for (a, b) in r.headers.iter().zip(&headers) {
                    assert_eq!(a.name.as_bytes(), b.name.of(data));
                    assert_eq!(a.value.trim_ascii(), b.value.of(data));
                }
            }
            other => panic!("net accepted, httparse said {other:?}"),
        }
        let _ = net::parse::framing(data, &head, &headers);
    }
    let _ = net::__fuzz::fuzz_chunked(data);
});
