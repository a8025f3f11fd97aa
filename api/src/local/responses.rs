//! What the local API answers: the bodies of its routes.

/// One page of grants, and where the next begins if there may be more.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantPage {
    /// The grants, in id order.
    pub grants: Vec<serde_json::Value>,
    /// The `after` of the next page, if the listing may go on.
    pub next_after: Option<String>,
}
