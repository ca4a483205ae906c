//! The config file (`tandemd --config`, `config.check`, `config.apply`): any text is either a
//! list of errors or a config; a config that validates compiles to a generation, or to an
//! error, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_control::compile::compile;
use tandem_control::config;
use tandem_dataplane::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse("fuzz.toml", text) {
        Ok(cfg) => {
            let _ = compile(&cfg, 1, &|_| Some(MacAddr([2, 0, 0, 0, 0, 1])));
        }
        Err(errors) => {
            assert!(!errors.messages().is_empty(), "a refusal says why");
        }
    }
});
