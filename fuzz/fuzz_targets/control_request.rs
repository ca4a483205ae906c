//! Control socket requests, as `tandemd` reads them: the input split into lines as the socket
//! does, each read as a JSON `Request`, its command looked up and its args read as that
//! command's args type. Nothing panics; args that parse go back through `Command::request` (what
//! tandemctl sends) to the same value; hex (capture frames) decodes and re-encodes losslessly.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_control::api::{self, Command};
use tandem_control::socket::{Reply, Request, MAX_REQUEST};

fn round_trip<T>(cmd: Command, req: &Request)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Ok(args) = api::parse_args::<T>(req) else {
        return;
    };
    let again = cmd.request(&args);
    let back: T = api::parse_args(&again).expect("args tandemctl sends parse");
    assert_eq!(back, args);
}

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        if line.len() > MAX_REQUEST {
            continue;
        }
        if let Ok(s) = std::str::from_utf8(line) {
            if let Ok(bytes) = api::hex_decode(s) {
                assert_eq!(api::hex_encode(&bytes), s.to_ascii_lowercase());
            }
        }
        // tandemctl reads replies the same way.
        let _ = serde_json::from_slice::<Reply>(line);
        let Ok(req) = serde_json::from_slice::<Request>(line) else {
            continue;
        };
        let Ok(cmd) = Command::of(&req) else {
            continue;
        };
        match cmd {
            Command::States => round_trip::<api::StatesArgs>(cmd, &req),
            Command::ConfigCheck => round_trip::<api::ConfigCheckArgs>(cmd, &req),
            Command::ConfigApply => round_trip::<api::ConfigApplyArgs>(cmd, &req),
            Command::CaptureStart => round_trip::<api::CaptureStartArgs>(cmd, &req),
            Command::CapturePoll => round_trip::<api::CapturePollArgs>(cmd, &req),
            Command::StatesKill => {
                round_trip::<api::StatesKillArgs>(cmd, &req);
                // The refusal rules of a kill take any args without panicking.
                if let Ok(args) = api::parse_args::<api::StatesKillArgs>(&req) {
                    let _ = tandem_control::state_kill::KillFilter::of(&args);
                }
            }
            _ => round_trip::<api::NoArgs>(cmd, &req),
        }
    }
});
