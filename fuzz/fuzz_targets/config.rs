//! Every policy's configuration loader, and the bundle's sectioned one:
//! any bytes load or are refused with an error that names a field (`.` for
//! the document itself) and says what is wrong; nothing panics. The first
//! byte picks the loader (`fuzz/seeds.py` writes seeds the same way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::{Bundle, SECTIONS};
use palisade_shared::config::ConfigError;
use palisade_shared::engine::fake::FakeHost;
use palisade_shared::engine::Module;

fn named(err: ConfigError) {
    assert!(!err.path.is_empty(), "an error without a path: {err}");
    assert!(
        !err.message.is_empty(),
        "an error without a message at {}",
        err.path
    );
    assert!(!err.to_string().is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&loader, json)) = data.split_first() else {
        return;
    };
    // 6 (transport) came after the bundle's 5: the seeds keep their loader; 7 (llm) after it.
    let result = match loader % 8 {
        0 => palisade_waf::config::Config::from_json(json).map(drop),
        1 => palisade_jwt::config::Config::from_json(json).map(drop),
        2 => palisade_mfa::config::Config::from_json(json).map(drop),
        3 => palisade_ratelimit::config::Config::from_json(json).map(drop),
        4 => palisade_audit::config::AuditConfig::from_json(json).map(drop),
        6 => palisade_transport::config::Config::from_json(json).map(drop),
        7 => palisade_llm::config::Config::from_json(json).map(drop),
        _ => {
            let host = FakeHost::new();
            match Bundle::configure(json, &host) {
                Ok(_) => Ok(()),
                Err(err) => {
                    // A stage's error is placed under its section.
                    let first = err.path.split(['.', '[']).next().unwrap_or("");
                    let document_level = err.path == ".";
                    let is_json_object =
                        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json)
                            .is_ok();
                    if is_json_object && !document_level {
                        let known = SECTIONS.contains(&first);
                        let unknown_section = err.message.starts_with("unknown section");
                        assert!(known || unknown_section, "error outside any section: {err}");
                    }
                    Err(err)
                }
            }
        }
    };
    if let Err(err) = result {
        named(err);
    }
});
