//! A member's catalog as members read it: DCAT 3 in JSON-LD, the
//! vocabulary of the Dataspace Protocol's catalogs, with each offer's
//! terms as an ODRL offer. The context is written inline, so a JSON-LD
//! processor expands the document without fetching anything; the
//! `quorate:` terms carry what DCAT and ODRL have no word for (the
//! resource pattern, and the terms in the form an access request uses).

use quorate_api::local::catalog::OfferSchema;
use quorate_contracts::{Action, Member};
use serde_json::{Map, Value, json};

use super::catalog::CheckedOffer;

/// The IRI the `quorate:` prefix stands for.
pub const QUORATE_VOCAB: &str = "urn:quorate:vocab:";

/// The catalog `owner` shows `offers` as (those its reader may see).
pub fn catalog(owner: &Member, offers: &[CheckedOffer]) -> Value {
    let did = owner.did.to_string();
    json!({
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "odrl": "http://www.w3.org/ns/odrl/2/",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
            "quorate": QUORATE_VOCAB,
            "quorate:schemaDocument": { "@type": "@json" },
        },
        "@id": format!("{did}#catalog"),
        "@type": "dcat:Catalog",
        "dct:title": format!("Offers of {}", owner.name),
        "dct:publisher": { "@id": did, "quorate:memberName": owner.name },
        "dcat:service": [service(owner)],
        "dcat:dataset": offers.iter().map(|o| dataset(owner, o)).collect::<Vec<_>>(),
    })
}

fn service(owner: &Member) -> Value {
    json!({
        "@id": format!("{}#gateway", owner.did),
        "@type": "dcat:DataService",
        "dct:title": format!("The Quorate gateway of {}", owner.name),
        "dct:conformsTo": { "@id": "urn:quorate:protocol:data:2" },
    })
}

fn dataset(owner: &Member, offer: &CheckedOffer) -> Value {
    let did = owner.did.to_string();
    let view = &offer.view;
    let id = format!("{did}#offer-{}", view.id);
    let terms = &view.offer.terms;
    let mut out = Map::new();
    out.insert("@id".into(), id.clone().into());
    out.insert("@type".into(), "dcat:Dataset".into());
    out.insert("dct:identifier".into(), view.id.clone().into());
    out.insert("dct:title".into(), view.offer.title.clone().into());
    if let Some(description) = &view.offer.description {
        out.insert("dct:description".into(), description.clone().into());
    }
    if !view.offer.keywords.is_empty() {
        out.insert("dcat:keyword".into(), json!(view.offer.keywords));
    }
    out.insert(
        "dct:modified".into(),
        json!({ "@value": quorate_contracts::rfc3339_ms(view.updated_at_ms), "@type": "xsd:dateTime" }),
    );
    match &view.offer.schema {
        Some(OfferSchema::Url(url)) => {
            out.insert("dct:conformsTo".into(), json!({ "@id": url }));
        }
        Some(OfferSchema::Document(document)) => {
            out.insert("quorate:schemaDocument".into(), document.clone());
        }
        None => {}
    }
    out.insert("quorate:resource".into(), offer.resource.to_string().into());
    let mut distribution = json!({
        "@type": "dcat:Distribution",
        "dcat:accessService": { "@id": format!("{did}#gateway") },
    });
    if let Some(media_type) = &view.offer.media_type {
        distribution["dcat:mediaType"] = json!({
            "@id": format!("https://www.iana.org/assignments/media-types/{media_type}")
        });
    }
    out.insert("dcat:distribution".into(), json!([distribution]));
    let mut constraints = Vec::new();
    if let Some(max) = offer.duration_max_ms {
        constraints.push(json!({
            "odrl:leftOperand": { "@id": "odrl:elapsedTime" },
            "odrl:operator": { "@id": "odrl:lteq" },
            "odrl:rightOperand": { "@value": xsd_duration(max), "@type": "xsd:duration" },
        }));
    }
    if !terms.purposes.is_empty() {
        constraints.push(json!({
            "odrl:leftOperand": { "@id": "odrl:purpose" },
            "odrl:operator": { "@id": "odrl:isAnyOf" },
            "odrl:rightOperand": terms.purposes,
        }));
    }
    let mut permission = json!({
        "odrl:action": terms.actions.iter().map(|a| json!({ "@id": odrl_action(*a) })).collect::<Vec<_>>(),
    });
    if !constraints.is_empty() {
        permission["odrl:constraint"] = Value::Array(constraints);
    }
    out.insert(
        "odrl:hasPolicy".into(),
        json!([{
            "@id": format!("{id}-policy"),
            "@type": "odrl:Offer",
            "odrl:assigner": { "@id": did },
            "odrl:target": { "@id": id },
            "odrl:permission": [permission],
        }]),
    );
    // The terms as an access request names them.
    let mut quorate_terms = json!({
        "quorate:actions": terms.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
    });
    if let Some(max) = offer.duration_max_ms {
        quorate_terms["quorate:durationMaxMs"] = max.into();
    }
    if !terms.purposes.is_empty() {
        quorate_terms["quorate:purposes"] = json!(terms.purposes);
    }
    out.insert("quorate:terms".into(), quorate_terms);
    Value::Object(out)
}

/// ODRL's name for an action (`list` has none: it is Quorate's).
fn odrl_action(action: Action) -> &'static str {
    match action {
        Action::Read => "odrl:read",
        Action::Write => "odrl:modify",
        Action::Delete => "odrl:delete",
        Action::List => "quorate:list",
    }
}

/// `ms` as an `xsd:duration`: `P30D`, `PT1H30M`, `PT1.5S`.
pub fn xsd_duration(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours + minutes + seconds + millis > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if millis > 0 {
            let fraction = format!("{millis:03}");
            out.push_str(&format!("{seconds}.{}S", fraction.trim_end_matches('0')));
        } else if seconds > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&format!("{seconds}S"));
        }
    }
    out
}

/// The terms an offer of a catalog document names, read back by the
/// requester (its own node wrote no part of it: every field is checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferTerms {
    /// The offer's resource pattern.
    pub resource: String,
    /// Its actions.
    pub actions: Vec<Action>,
}

/// The terms of the offer `id` in a catalog document, if it lists one.
pub fn offer_terms(catalog: &Value, id: &str) -> Option<OfferTerms> {
    let dataset = catalog
        .get("dcat:dataset")?
        .as_array()?
        .iter()
        .find(|d| d.get("dct:identifier").and_then(Value::as_str) == Some(id))?;
    let resource = dataset.get("quorate:resource")?.as_str()?.to_owned();
    let actions = dataset
        .get("quorate:terms")?
        .get("quorate:actions")?
        .as_array()?
        .iter()
        .map(|a| a.as_str().and_then(|a| a.parse().ok()))
        .collect::<Option<Vec<Action>>>()?;
    Some(OfferTerms { resource, actions })
}

#[cfg(test)]
mod tests {
    use quorate_api::local::catalog::{Offer, OfferTerms as Terms};

    use super::*;

    #[test]
    fn durations_are_written_as_xsd_durations() {
        assert_eq!(xsd_duration(30 * 86_400_000), "P30D");
        assert_eq!(xsd_duration(90 * 60_000), "PT1H30M");
        assert_eq!(xsd_duration(1500), "PT1.5S");
        assert_eq!(xsd_duration(86_400_000 + 1000), "P1DT1S");
        assert_eq!(xsd_duration(0), "PT0S");
    }

    #[test]
    fn a_catalog_lists_each_offer_as_a_dataset_with_its_odrl_offer() {
        let owner = Member {
            id: quorate_contracts::MemberId([1; 32]),
            name: "org-a".into(),
            did: quorate_did::Keypair::from_seed(&[1; 32]).did(),
            joined_epoch: 0,
        };
        let offer = Offer {
            title: "Shipments".into(),
            description: Some("Every shipment, daily".into()),
            resource: "datasets/shipments/*".into(),
            media_type: Some("text/csv".into()),
            keywords: vec!["logistics".into()],
            schema: Some(OfferSchema::Url(
                "https://example.org/shipments.json".into(),
            )),
            terms: Terms {
                actions: vec![Action::Read, Action::List],
                duration_max: Some("30d".into()),
                purposes: vec!["customs clearance".into()],
            },
            audience: Vec::new(),
        };
        let checked = super::super::catalog::check("shipments", &offer, 0).unwrap();
        let doc = catalog(&owner, &[checked]);
        assert_eq!(doc["@type"], "dcat:Catalog");
        let dataset = &doc["dcat:dataset"][0];
        assert_eq!(dataset["dct:identifier"], "shipments");
        assert_eq!(dataset["quorate:resource"], "datasets/shipments/*");
        let permission = &dataset["odrl:hasPolicy"][0]["odrl:permission"][0];
        assert_eq!(permission["odrl:action"][0]["@id"], "odrl:read");
        assert_eq!(
            permission["odrl:constraint"][0]["odrl:rightOperand"]["@value"],
            "P30D"
        );
        assert_eq!(
            offer_terms(&doc, "shipments"),
            Some(OfferTerms {
                resource: "datasets/shipments/*".into(),
                actions: vec![Action::Read, Action::List],
            })
        );
        assert_eq!(offer_terms(&doc, "other"), None);
    }
}
