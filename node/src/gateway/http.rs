//! The pipeline behind the signed HTTP door (`quorate_api::gateway`): the
//! door authenticates, this runs the same pipeline libp2p requests go
//! through, and the door maps what it returns to HTTP.

use quorate_api::gateway::{Pipeline, TRANSPORT, Upload, Wrote};
use quorate_api::objects::{ByteRange, Forward, ListQuery, Listing, ObjectBody, Precondition};
use quorate_api::refusal::Refusal;
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;

use super::Gateway;

impl Pipeline for Gateway {
    async fn read(
        &self,
        caller: Did,
        path: ResourcePath,
        range: Option<ByteRange>,
        purpose: Option<String>,
        forward: Forward,
    ) -> Result<ObjectBody, Refusal> {
        Gateway::read(
            self,
            &caller,
            TRANSPORT,
            &path,
            range,
            purpose.as_deref(),
            &forward,
        )
        .await
    }

    async fn list(
        &self,
        caller: Did,
        query: ListQuery,
        purpose: Option<String>,
    ) -> Result<Listing, Refusal> {
        Gateway::list(self, &caller, TRANSPORT, &query, purpose.as_deref()).await
    }

    async fn write(
        &self,
        caller: Did,
        path: ResourcePath,
        upload: Upload,
    ) -> Result<Wrote, Refusal> {
        Gateway::write(self, &caller, TRANSPORT, &path, upload).await
    }

    async fn delete(
        &self,
        caller: Did,
        path: ResourcePath,
        purpose: Option<String>,
        precondition: Precondition,
        forward: Forward,
    ) -> Result<(), Refusal> {
        Gateway::delete(
            self,
            &caller,
            TRANSPORT,
            &path,
            purpose.as_deref(),
            precondition,
            &forward,
        )
        .await
    }

    async fn catalog(&self, caller: Did) -> Result<serde_json::Value, Refusal> {
        self.catalog_for(&caller, TRANSPORT).await
    }

    fn is_member(&self, did: &Did) -> bool {
        self.state().member_by_did(did).is_some()
    }

    async fn refused(
        &self,
        caller: Option<Did>,
        action: Action,
        resource: String,
        refusal: &Refusal,
    ) {
        Gateway::refused(self, TRANSPORT, caller.as_ref(), action, &resource, refusal).await;
    }
}
