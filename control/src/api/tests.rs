use super::*;
use serde_json::json;

#[test]
fn command_names_round_trip_and_unknown_ones_are_refused_with_the_list() {
    for c in Command::ALL {
        assert_eq!(Command::from_name(c.name()), Some(c));
    }
    let e = Command::of(&Request::new("carp.toggle", Value::Null))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("unknown command \"carp.toggle\" (commands: status, carp,"));
}

#[test]
fn requests_omit_empty_args_and_daemon_reads_absent_args_as_empty() {
    let r = Command::Status.request(&NoArgs {});
    assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"cmd":"status"}"#);
    let a: StatesArgs = parse_args(&r).unwrap();
    assert_eq!(a, StatesArgs::default());
    let r = Command::States.request(&StatesArgs {
        port: Some(80),
        ..StatesArgs::default()
    });
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"cmd":"states","args":{"port":80}}"#
    );
    let bad = Request::new("states", json!({"prot": "tcp"}));
    let e = parse_args::<StatesArgs>(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("bad arguments to states: unknown field `prot`"),
        "{e}"
    );
}

#[test]
fn carp_json_has_vips_with_the_contract_fields() {
    let r = CarpReply {
        vips: vec![CarpVip {
            interface: "wan".into(),
            vhid: 1,
            vip: Ipv4Addr::new(172, 25, 46, 100),
            status: CarpStatus::Master,
            advbase: 1,
            advskew: 0,
            demotion: 0,
            last_transition_reason: "master down".into(),
            previous_status: Some(CarpStatus::Backup),
            since_s: Some(3),
        }],
        enabled: true,
        maintenance: false,
        demotion: 0,
    };
    let s = serde_json::to_string(&r).unwrap();
    assert!(
        s.starts_with(
            r#"{"vips":[{"interface":"wan","vhid":1,"vip":"172.25.46.100","status":"MASTER","#
        ),
        "{s}"
    );
    let back: CarpReply = serde_json::from_str(&s).unwrap();
    assert_eq!(back, r);
}

#[test]
fn stats_keep_their_order_through_a_json_value() {
    let r = StatsReply::from_pairs([("rx_frames", 5), ("tx_frames", 3), ("drop_a", 1)]);
    let v = to_data::<_, ApiError>(&r).unwrap();
    assert_eq!(v["counters"]["tx_frames"], 3);
    let back: StatsReply = from_data(Command::Stats, v).unwrap();
    assert_eq!(
        back.ordered(),
        vec![("rx_frames", 5), ("tx_frames", 3), ("drop_a", 1)]
    );
    // A counter the order leaves out still shows, after the ordered ones.
    let v = json!({"counters": {"b": 2, "a": 1, "c": 3}, "order": ["c"]});
    let r: StatsReply = serde_json::from_value(v).unwrap();
    assert_eq!(r.ordered(), vec![("c", 3), ("a", 1), ("b", 2)]);
}

#[test]
fn state_ids_and_endpoints_read_as_pf_shows_them() {
    assert_eq!(StateInfo::format_id(10, 500), "0000000a:00000000000001f4");
    let e = Endpoints {
        src: "192.168.0.100:40000".parse().unwrap(),
        dst: "172.25.46.1:80".parse().unwrap(),
    };
    assert_eq!(e.to_string(), "192.168.0.100:40000 -> 172.25.46.1:80");
    assert_eq!(
        serde_json::to_value(e).unwrap(),
        json!({"src": "192.168.0.100:40000", "dst": "172.25.46.1:80"})
    );
}

#[test]
fn hex_round_trips_and_rejects_garbage() {
    let b: Vec<u8> = (0..=255).collect();
    assert_eq!(hex_decode(&hex_encode(&b)).unwrap(), b);
    assert_eq!(hex_encode(&[0xab, 0x01]), "ab01");
    assert_eq!(hex_decode("AB01").unwrap(), vec![0xab, 0x01]);
    assert_eq!(
        hex_decode("abc").unwrap_err().to_string(),
        "odd-length hex (3 digits)"
    );
    assert_eq!(
        hex_decode("00zz").unwrap_err().to_string(),
        "not hex at offset 2"
    );
}

#[test]
fn a_poll_drains_the_tap_and_says_done_once_empty() {
    use tandem_dataplane::capture::{CaptureTap, Direction};
    let tap = CaptureTap::new(16, 2048);
    let args = CaptureStartArgs {
        interface: Some("lan".into()),
        count: 3,
        host: None,
        port: None,
    };
    tap.start(args.filter(Some(1)), args.count).unwrap();
    for i in 0..4u8 {
        tap.offer(1, Direction::Rx, &[i]);
        tap.offer(0, Direction::Rx, &[i]);
    }
    let r = CapturePollReply::drain(&tap, Some(2));
    assert_eq!(r.frames.len(), 2);
    assert!(!r.done, "one frame left");
    assert_eq!(r.captured, 3);
    let r = CapturePollReply::drain(&tap, None);
    assert_eq!(r.frames.len(), 1);
    assert_eq!(r.frames[0].hex, "02");
    assert!(r.done);
}

#[test]
fn captured_frames_travel_as_hex() {
    let f = tandem_dataplane::capture::CapturedFrame {
        if_index: 1,
        direction: tandem_dataplane::capture::Direction::Tx,
        ts_ns: 7,
        orig_len: 3,
        bytes: vec![1, 2, 3],
    };
    let w = CaptureFrame::from(&f);
    assert_eq!(
        serde_json::to_value(&w).unwrap(),
        json!({"if_index": 1, "dir": "tx", "ts_ns": 7, "orig_len": 3, "hex": "010203"})
    );
    assert_eq!(w.bytes().unwrap(), vec![1, 2, 3]);
}
