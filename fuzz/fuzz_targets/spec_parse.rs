//! Bytes -> `CampaignSpec::from_toml_str` and `from_json_str`, then `validate`.
//! Never panics; every refusal is an error with a message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tla_core::spec::CampaignSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [
        CampaignSpec::from_toml_str(text),
        CampaignSpec::from_json_str(text),
    ] {
        let outcome = parsed.and_then(|spec| spec.validate().map(|_| ()));
        if let Err(error) = outcome {
            assert!(
                !error.to_string().trim().is_empty(),
                "an error without a message"
            );
        }
    }
});
