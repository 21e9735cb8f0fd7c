//! The gemini parser on arbitrary bodies: never panics, at most one
//! terminal `Done` and nothing after it, chunking-invariant.
#![no_main]

use demandflow_stages::provider::Api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| demandflow_fuzz::check_provider(Api::Gemini, data));
