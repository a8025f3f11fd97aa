//! This organization's catalog of offers: checked when written, kept in
//! the home's `catalog.json` (rewritten whole and durably before a change
//! shows), and filtered per member when a member reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use quorate_api::local::catalog::{
    DESCRIPTION_BYTES_MAX, OFFER_LIST_MAX, OFFER_WORD_BYTES_MAX, OFFERS_MAX, Offer, OfferSchema,
    OfferView, SCHEMA_DOCUMENT_BYTES_MAX, SCHEMA_URL_BYTES_MAX, TITLE_BYTES_MAX,
};
use quorate_contracts::{Action, Member, ResourcePattern};
use serde::{Deserialize, Serialize};

use crate::home::duration::HumanDuration;

/// File name of the catalog in the home.
pub const CATALOG_FILE: &str = "catalog.json";
/// Largest catalog, as the file holds it: a change that would make it
/// larger is refused, so the file always opens again and every member's
/// catalog fits one answer (`net::protocol::CATALOG_BYTES_MAX`).
pub const CATALOG_FILE_BYTES_MAX: u64 = 1 << 20;
/// Longest media type.
const MEDIA_TYPE_BYTES_MAX: usize = 127;
/// The file's format version.
const FORMAT_VERSION: u32 = 1;

/// Why an offer is refused (nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The id is not 1 to 64 of a-z, 0-9, '-'.
    #[error("offer id {0:?} is invalid: write 1 to 64 of a-z, 0-9, '-'")]
    Id(String),
    /// A field is empty, too long or malformed.
    #[error("{field}: {why}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The catalog holds [`OFFERS_MAX`] offers already.
    #[error("the catalog holds {OFFERS_MAX} offers or 1 MiB already: remove or shorten one first")]
    Full,
}

/// Why the catalog cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a catalog.
    #[error("{path} is not a catalog: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why not.
        why: String,
    },
}

/// An offer, checked: its pattern parsed and its longest duration in ms.
#[derive(Debug, Clone)]
pub struct CheckedOffer {
    /// The offer as written.
    pub view: OfferView,
    /// Its resource pattern.
    pub resource: ResourcePattern,
    /// Its longest grant, if bounded.
    pub duration_max_ms: Option<u64>,
}

impl CheckedOffer {
    /// Whether `member` may see it: every member if it names no audience,
    /// otherwise those it names, by name or did:key.
    pub fn visible_to(&self, member: &Member) -> bool {
        let audience = &self.view.offer.audience;
        audience.is_empty()
            || audience
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&member.name) || *a == member.did.to_string())
    }

    /// Whether a request within these terms is one the offer allows: every
    /// pattern within its resource, every action among its actions, the
    /// grant no longer than its longest, and one of its purposes if it
    /// names any. Says which term is outside.
    pub fn allows(
        &self,
        resources: &[ResourcePattern],
        actions: &[Action],
        duration_ms: Option<u64>,
        purpose: Option<&str>,
    ) -> Result<(), String> {
        let terms = &self.view.offer.terms;
        if let Some(outside) = resources.iter().find(|r| !self.resource.covers(r)) {
            return Err(format!(
                "{outside} is outside the offer's resource {}",
                self.resource
            ));
        }
        if let Some(action) = actions.iter().find(|a| !terms.actions.contains(a)) {
            return Err(format!("the offer does not grant {}", action.as_str()));
        }
        if let (Some(max), Some(asked)) = (self.duration_max_ms, duration_ms)
            && asked > max
        {
            return Err(format!(
                "{} is longer than the offer's {}",
                quorate_contracts::human_duration_ms(asked),
                quorate_contracts::human_duration_ms(max)
            ));
        }
        if !terms.purposes.is_empty()
            && !purpose.is_some_and(|p| terms.purposes.iter().any(|t| t == p))
        {
            return Err(format!(
                "the offer is for the purposes {}",
                terms.purposes.join(", ")
            ));
        }
        Ok(())
    }
}

/// Checks an offer's id.
pub fn check_id(id: &str) -> Result<(), OfferError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OfferError::Id(id.to_owned()))
    }
}

/// Checks an offer: every bound, the pattern, the duration, the media
/// type, the schema; audience entries must be member names or did:keys.
pub fn check(id: &str, offer: &Offer, updated_at_ms: u64) -> Result<CheckedOffer, OfferError> {
    check_id(id)?;
    let field = |field: &'static str, why: String| OfferError::Field { field, why };
    let bounded = |name: &'static str, text: &str, max: usize, required: bool| {
        if required && text.trim().is_empty() {
            return Err(field(name, "must not be empty".to_owned()));
        }
        if text.len() > max {
            return Err(field(name, format!("at most {max} bytes")));
        }
        if text.chars().any(char::is_control) && name != "description" {
            return Err(field(name, "control characters are not allowed".to_owned()));
        }
        Ok(())
    };
    bounded("title", &offer.title, TITLE_BYTES_MAX, true)?;
    if let Some(description) = &offer.description {
        bounded("description", description, DESCRIPTION_BYTES_MAX, false)?;
    }
    let resource = ResourcePattern::parse(&offer.resource)
        .map_err(|e| field("resource", format!("{:?}: {e}", offer.resource)))?;
    if let Some(media_type) = &offer.media_type {
        let parts: Vec<&str> = media_type.split('/').collect();
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if media_type.len() > MEDIA_TYPE_BYTES_MAX
            || parts.len() != 2
            || !parts.iter().all(|p| token(p))
        {
            return Err(field(
                "media_type",
                format!("{media_type:?} is not a media type such as text/csv"),
            ));
        }
    }
    for (name, list) in [
        ("keywords", &offer.keywords),
        ("audience", &offer.audience),
        ("terms.purposes", &offer.terms.purposes),
    ] {
        if list.len() > OFFER_LIST_MAX {
            return Err(field(name, format!("at most {OFFER_LIST_MAX} values")));
        }
        for word in list {
            bounded(name, word, OFFER_WORD_BYTES_MAX, true)?;
        }
    }
    for member in &offer.audience {
        let is_name = (1..=64).contains(&member.len())
            && member
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !is_name && member.parse::<quorate_did::Did>().is_err() {
            return Err(field(
                "audience",
                format!("{member:?} is neither a member name nor a did:key"),
            ));
        }
    }
    match &offer.schema {
        Some(OfferSchema::Url(url)) => {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok
                || url.len() > SCHEMA_URL_BYTES_MAX
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(field(
                    "schema.url",
                    format!("an http(s) URL of at most {SCHEMA_URL_BYTES_MAX} bytes"),
                ));
            }
        }
        Some(OfferSchema::Document(document)) => {
            let size = serde_json::to_vec(document).map_or(usize::MAX, |b| b.len());
            if size > SCHEMA_DOCUMENT_BYTES_MAX || !document.is_object() {
                return Err(field(
                    "schema.document",
                    format!("a JSON object of at most {SCHEMA_DOCUMENT_BYTES_MAX} bytes"),
                ));
            }
        }
        None => {}
    }
    if offer.terms.actions.is_empty() {
        return Err(field(
            "terms.actions",
            "name at least one action".to_owned(),
        ));
    }
    let duration_max_ms = offer
        .terms
        .duration_max
        .as_deref()
        .map(|text| {
            text.parse::<HumanDuration>()
                .map(|d| d.0.as_millis() as u64)
                .map_err(|e| field("terms.duration_max", e.to_string()))
        })
        .transpose()?;
    if duration_max_ms == Some(0) {
        return Err(field(
            "terms.duration_max",
            "must be longer than 0".to_owned(),
        ));
    }
    let mut offer = offer.clone();
    offer.terms.actions.sort();
    offer.terms.actions.dedup();
    Ok(CheckedOffer {
        view: OfferView {
            id: id.to_owned(),
            offer,
            updated_at_ms,
        },
        resource,
        duration_max_ms,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: u32,
    offers: Vec<OfferView>,
}

/// The catalog: offers in memory, the file their durable copy.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    offers: RwLock<BTreeMap<String, CheckedOffer>>,
    /// Serializes writers: each rewrites the whole file.
    writing: Mutex<()>,
}

impl Catalog {
    /// Reads `dir/catalog.json` (an empty catalog if there is none).
    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        let path = dir.join(CATALOG_FILE);
        let io = |source| CatalogError::Io {
            path: path.clone(),
            source,
        };
        let corrupt = |why: String| CatalogError::Corrupt {
            path: path.clone(),
            why,
        };
        let mut offers = BTreeMap::new();
        if let Some(bytes) =
            crate::home::durable::read_bounded(&path, CATALOG_FILE_BYTES_MAX).map_err(io)?
        {
            let file: CatalogFile =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
            if file.version != FORMAT_VERSION {
                return Err(corrupt(format!("format version {}", file.version)));
            }
            if file.offers.len() > OFFERS_MAX {
                return Err(corrupt(format!("more than {OFFERS_MAX} offers")));
            }
            for view in file.offers {
                let checked = check(&view.id, &view.offer, view.updated_at_ms)
                    .map_err(|e| corrupt(format!("offer {}: {e}", view.id)))?;
                offers.insert(view.id.clone(), checked);
            }
        }
        Ok(Self {
            path,
            offers: RwLock::new(offers),
            writing: Mutex::new(()),
        })
    }

    /// Every offer, by id.
    pub fn list(&self) -> Vec<CheckedOffer> {
        self.offers
            .read()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One offer.
    pub fn get(&self, id: &str) -> Option<CheckedOffer> {
        self.offers.read().ok().and_then(|o| o.get(id).cloned())
    }

    /// The offers `member` may see.
    pub fn visible_to(&self, member: &Member) -> Vec<CheckedOffer> {
        self.list()
            .into_iter()
            .filter(|o| o.visible_to(member))
            .collect()
    }

    /// Writes an offer (new, or replacing the one of that id), durably
    /// before it shows; returns it and whether it is new. Blocking.
    pub fn put(
        &self,
        id: &str,
        offer: &Offer,
        now_ms: u64,
    ) -> Result<(CheckedOffer, bool), PutError> {
        let checked = check(id, offer, now_ms)?;
        let _writing = self.writing.lock().map_err(|_| PutError::Poisoned)?;
        let mut next = self.snapshot()?;
        let created = !next.contains_key(id);
        if created && next.len() >= OFFERS_MAX {
            return Err(OfferError::Full.into());
        }
        next.insert(id.to_owned(), checked.clone());
        self.write(next)?;
        Ok((checked, created))
    }

    /// Removes an offer; whether there was one. Blocking.
    pub fn remove(&self, id: &str) -> Result<bool, PutError> {
        let _writing = self.writing.lock().map_err(|_| PutError::Poisoned)?;
        let mut next = self.snapshot()?;
        if next.remove(id).is_none() {
            return Ok(false);
        }
        self.write(next)?;
        Ok(true)
    }

    fn snapshot(&self) -> Result<BTreeMap<String, CheckedOffer>, PutError> {
        self.offers
            .read()
            .map(|o| o.clone())
            .map_err(|_| PutError::Poisoned)
    }

    fn write(&self, next: BTreeMap<String, CheckedOffer>) -> Result<(), PutError> {
        let file = CatalogFile {
            version: FORMAT_VERSION,
            offers: next.values().map(|o| o.view.clone()).collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| PutError::Io(std::io::Error::other(e)))?;
        if bytes.len() as u64 > CATALOG_FILE_BYTES_MAX {
            return Err(OfferError::Full.into());
        }
        crate::home::durable::replace(&self.path, &bytes).map_err(PutError::Io)?;
        let mut offers = self.offers.write().map_err(|_| PutError::Poisoned)?;
        *offers = next;
        Ok(())
    }
}

/// Why a catalog change was not made.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The offer is refused.
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// The file cannot be written (nothing changed).
    #[error("cannot write the catalog: {0}")]
    Io(std::io::Error),
    /// A writer panicked.
    #[error("the catalog is unavailable")]
    Poisoned,
}
