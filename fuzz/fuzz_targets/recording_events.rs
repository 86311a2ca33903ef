//! The asciicast v2 event lines of a session-recording upload (`POST
//! /v1/recordings/{id}/chunks`, raw `application/x-asciicast` or the
//! `events` of the JSON form) through `recordings::parse_events`: any text is
//! refused with an error naming the line, or accepted; what is accepted is
//! normalized with consistent totals, and the normalized form is accepted
//! again unchanged.
#![no_main]
use latch_server::routes::recordings::parse_events;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(p) = parse_events(s.to_string()) else { return };
    assert!(p.events >= 1 && p.bytes >= 0, "{} events, {} bytes", p.events, p.bytes);
    assert!(0 <= p.first_us && p.first_us <= p.last_us, "{} > {}", p.first_us, p.last_us);
    assert_eq!(p.body.split_terminator('\n').count() as i64, p.events, "one line per event");
    assert!(p.bytes as usize <= s.len(), "more output bytes than input");
    let Ok(again) = parse_events(p.body.clone()) else { panic!("the normalized events do not parse: {:?}", p.body) };
    assert_eq!(again.body, p.body);
    assert_eq!((again.events, again.bytes, again.first_us, again.last_us), (p.events, p.bytes, p.first_us, p.last_us));
});
