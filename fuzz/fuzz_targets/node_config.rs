//! The node's config file (`config.toml`, read by `home.load_config`
//! through `Config::load`, which refuses files over `CONFIG_BYTES_MAX`
//! and then calls `Config::parse`), and what the node derives from it at
//! start: agreement timeouts, connection limits, upstream routes.
//!
//! Properties: a config that parses serializes back to TOML that parses to
//! the same config (nothing is lost or reinterpreted); deriving the node's
//! settings from it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_node::home::config::{CONFIG_BYTES_MAX, Config};

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > CONFIG_BYTES_MAX {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let printed = toml::to_string(&config).expect("a parsed config serializes");
    let again = Config::parse(&printed).expect("a serialized config parses");
    assert_eq!(again, config, "config changed through TOML:\n{printed}");

    let _ = config.consensus.machine_config("fuzz-chain");
    let _ = config.api.connection_limits();
    let _ = quorate_node::home::validate_name(&config.node.name);
    let _ = quorate_node::gateway::upstream::Upstreams::new(&config.upstream);
});
