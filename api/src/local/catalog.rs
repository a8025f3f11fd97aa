//! The catalog of offers as documents: what `PUT /v1/catalog/offers/{id}`
//! carries and `GET /v1/catalog/offers` lists, and what the node's
//! `catalog.json` holds. The node checks offers and renders them for
//! members as a DCAT catalog in JSON-LD; here is only their shape.

use quorate_contracts::Action;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most offers in a catalog.
pub const OFFERS_MAX: usize = 256;
/// Longest title, in bytes.
pub const TITLE_BYTES_MAX: usize = 200;
/// Longest description, in bytes.
pub const DESCRIPTION_BYTES_MAX: usize = 4096;
/// Most keywords, audience members or accepted purposes of one offer.
pub const OFFER_LIST_MAX: usize = 32;
/// Longest keyword or purpose, in bytes.
pub const OFFER_WORD_BYTES_MAX: usize = 256;
/// Longest schema link, in bytes.
pub const SCHEMA_URL_BYTES_MAX: usize = 2048;
/// Largest inline schema document, as compact JSON.
pub const SCHEMA_DOCUMENT_BYTES_MAX: usize = 16 * 1024;

/// A dataset this organization offers to members: what it is, where its
/// objects live, and the terms it is willing to grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// A short title (1 to 200 bytes).
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// What the data is (at most 4,096 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// The objects it covers: `*`, `prefix/*` or an exact path.
    pub resource: String,
    /// The media type of its objects (`text/csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 127))]
    pub media_type: Option<String>,
    /// Words to find it by (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub keywords: Vec<String>,
    /// The shape of its objects: a link, or a schema document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<OfferSchema>,
    /// The terms this organization is willing to grant.
    pub terms: OfferTerms,
    /// Members that see the offer, by name or did:key (at most 32); every
    /// member if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub audience: Vec<String>,
}

/// An offer's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OfferSchema {
    /// Where the schema is published (`https://…`, at most 2,048 bytes).
    Url(String),
    /// The schema itself (a JSON document of at most 16 KiB).
    Document(serde_json::Value),
}

/// The terms of an offer: what an access request citing it may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferTerms {
    /// Actions granted (`read`, `list`, `write`; at least one).
    #[schemars(with = "Vec<OfferAction>", length(min = 1))]
    pub actions: Vec<Action>,
    /// The longest grant it leads to (`90m`, `12h`, `30d`); any the
    /// consortium allows if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_max: Option<String>,
    /// Purposes a request must declare one of; any (or none) if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub purposes: Vec<String>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "OfferAction")]
#[allow(dead_code)] // only its schema is used
enum OfferAction {
    Read,
    List,
    Write,
}

/// One offer of this organization's catalog, as `GET
/// /v1/catalog/offers` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OfferView {
    /// Its id (1 to 64 of a-z, 0-9, '-'), which access requests cite.
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,64}$"))]
    pub id: String,
    /// The offer.
    #[serde(flatten)]
    pub offer: Offer,
    /// When it was last written (ms since the Unix epoch).
    pub updated_at_ms: u64,
}

/// `GET /v1/catalog/offers`: this organization's offers, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Offers {
    /// The offers.
    pub offers: Vec<OfferView>,
}
