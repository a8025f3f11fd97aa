//! `quorate node reload` and `quorate node upstreams`: the upstream routes
//! in force, reloaded from the config without a restart.

use crate::HomeArg;
use crate::api::{checked, client};

/// Reads the config's `[[upstream]]` routes again and puts them in force.
pub(crate) fn reload(home: HomeArg) -> anyhow::Result<()> {
    let api = client(home)?;
    let response = checked(
        api.post_json("/v1/upstreams/reload", &serde_json::json!({})),
        &api,
    )?;
    let routes = response.json()?;
    let count = routes["routes"].as_array().map_or(0, Vec::len);
    println!("reloaded: {count} upstream route(s) in force");
    print_routes(&routes);
    Ok(())
}

/// Prints the routes in force and the health of their URLs.
pub(crate) fn show(home: HomeArg) -> anyhow::Result<()> {
    let api = client(home)?;
    let routes = checked(api.get("/v1/upstreams"), &api)?.json()?;
    if routes["routes"].as_array().is_none_or(Vec::is_empty) {
        println!("no upstream routes (add [[upstream]] to the config, then `quorate node reload`)");
        return Ok(());
    }
    print_routes(&routes);
    Ok(())
}

fn print_routes(routes: &serde_json::Value) {
    let routes = routes["routes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if routes.is_empty() {
        return;
    }
    println!(
        "{:<20} {:<18} {:<40} {:>9} {:>8}  CIRCUIT",
        "PREFIX", "BALANCE", "URL", "IN FLIGHT", "FAILURES"
    );
    for route in routes {
        for url in route["urls"].as_array().into_iter().flatten() {
            println!(
                "{:<20} {:<18} {:<40} {:>9} {:>8}  {}",
                route["prefix"].as_str().unwrap_or("?"),
                route["balance"].as_str().unwrap_or("?"),
                url["url"].as_str().unwrap_or("?"),
                url["in_flight"].as_u64().unwrap_or(0),
                url["failures"].as_u64().unwrap_or(0),
                if url["open"].as_bool() == Some(true) {
                    "open (skipped)"
                } else {
                    "closed"
                },
            );
        }
    }
}
