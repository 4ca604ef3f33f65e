//! ACME challenges: what the HTTP-01 responder serves and what DNS-01 publishes.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::AcmeChallenge;
use crate::schema::acme_challenges;
use crate::{Store, StoreError, with_conn};

impl Store {
    /// Stores the challenge of an authorization (or refreshes it on a resumed order).
    pub async fn upsert_challenge(&self, challenge: AcmeChallenge) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::insert_into(acme_challenges::table)
                .values(&challenge)
                .on_conflict((
                    acme_challenges::authorization_url,
                    acme_challenges::challenge_type,
                ))
                .do_update()
                .set((
                    acme_challenges::token.eq(&challenge.token),
                    acme_challenges::key_authorization.eq(&challenge.key_authorization),
                    acme_challenges::status.eq(&challenge.status),
                    acme_challenges::error.eq(None::<String>),
                    acme_challenges::dns_record_name.eq(&challenge.dns_record_name),
                    acme_challenges::dns_record_value.eq(&challenge.dns_record_value),
                    acme_challenges::dns_zone.eq(&challenge.dns_zone),
                    acme_challenges::dns_cleaned_at.eq(challenge.dns_cleaned_at),
                    acme_challenges::updated_at.eq(challenge.updated_at),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// The key authorization to answer for an HTTP-01 token that is being validated.
    pub async fn http01_key_authorization(
        &self,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        with_conn!(self, |conn| {
            Ok(acme_challenges::table
                .filter(acme_challenges::token.eq(token))
                .filter(acme_challenges::challenge_type.eq("http-01"))
                .filter(acme_challenges::status.eq_any(["pending", "processing"]))
                .select(acme_challenges::key_authorization)
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// HTTP-01 challenges of every organization waiting to be answered that
    /// changed after `since_ms`, oldest first: (name, token, key
    /// authorization), for agents that serve them from a webroot.
    pub async fn open_http01_challenges(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        // Literal SQL, so both databases use the partial index of migration 000013.
        let open = diesel::dsl::sql::<diesel::sql_types::Bool>(
            "acme_challenges.challenge_type = 'http-01' \
             AND acme_challenges.status IN ('pending', 'processing')",
        );
        with_conn!(self, |conn| {
            Ok(acme_challenges::table
                .filter(open)
                .filter(acme_challenges::updated_at.gt(since_ms))
                .order(acme_challenges::updated_at.asc())
                .limit(limit)
                .select((
                    acme_challenges::name,
                    acme_challenges::token,
                    acme_challenges::key_authorization,
                ))
                .load(conn)
                .await?)
        })
    }

    /// Sets the status of the challenges of one authorization.
    pub async fn set_challenge_status(
        &self,
        organization_id: &str,
        authorization_url: &str,
        status: &str,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            let validated_at = (status == "valid").then_some(now_ms);
            diesel::update(acme_challenges::table)
                .filter(acme_challenges::organization_id.eq(organization_id))
                .filter(acme_challenges::authorization_url.eq(authorization_url))
                .set((
                    acme_challenges::status.eq(status),
                    acme_challenges::error.eq(error),
                    acme_challenges::validated_at.eq(validated_at),
                    acme_challenges::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// Ends the challenges of an order (`valid` or `invalid`): the responder
    /// stops answering their tokens.
    pub async fn finish_order_challenges(
        &self,
        organization_id: &str,
        order_url: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        with_conn!(self, |conn| {
            let validated_at = (status == "valid").then_some(now_ms);
            Ok(diesel::update(acme_challenges::table)
                .filter(acme_challenges::organization_id.eq(organization_id))
                .filter(acme_challenges::order_url.eq(order_url))
                .filter(acme_challenges::status.eq_any(["pending", "processing"]))
                .set((
                    acme_challenges::status.eq(status),
                    acme_challenges::validated_at.eq(validated_at),
                    acme_challenges::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?)
        })
    }

    /// Challenges of a certificate, newest first.
    pub async fn list_challenges(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Vec<AcmeChallenge>, StoreError> {
        with_conn!(self, |conn| {
            Ok(acme_challenges::table
                .filter(acme_challenges::organization_id.eq(organization_id))
                .filter(acme_challenges::certificate_id.eq(certificate_id))
                .order(acme_challenges::created_at.desc())
                .select(AcmeChallenge::as_select())
                .load(conn)
                .await?)
        })
    }
}
