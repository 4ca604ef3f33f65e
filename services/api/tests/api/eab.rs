//! External Account Binding credentials through the admin API: set, replaced
//! and deleted by the admin token only, checked field by field, the HMAC key
//! sealed and never echoed.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use certfleet_proto::v1 as pb;
use certfleet_vault::EncryptionContext;
use tonic::Code;

use crate::support::{TestApp, authed, failure};

const DIRECTORY: &str = "https://ca.test/dir";
/// A recognisable HMAC key, so that a copy of it anywhere can be found.
const HMAC: [u8; 32] = *b"eab-hmac-key-0123456789abcdefghi";

fn set_request(
    organization: &str,
    directory_url: &str,
    key_id: &str,
    hmac_key: &str,
) -> pb::SetExternalAccountBindingRequest {
    pb::SetExternalAccountBindingRequest {
        organization: organization.to_owned(),
        directory_url: directory_url.to_owned(),
        key_id: key_id.to_owned(),
        hmac_key: hmac_key.to_owned(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_sets_replaces_and_deletes_an_eab() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.organizations().await?;
    let encoded = URL_SAFE_NO_PAD.encode(HMAC);

    let binding = client
        .set_external_account_binding(authed(
            set_request("acme", DIRECTORY, "kid-1", &encoded),
            &app.admin_token,
        ))
        .await?
        .into_inner();
    assert_eq!(binding.organization_id, org.id);
    assert_eq!(binding.directory_url, DIRECTORY);
    assert_eq!(binding.key_id, "kid-1");
    assert!(
        binding.created_at > 0 && binding.updated_at == binding.created_at,
        "{binding:?}"
    );

    // Stored sealed: neither the key nor its base64 form is in the row, and
    // the vault opens it under the organization's EAB context only.
    let row = app
        .store
        .find_eab_credential(&org.id, DIRECTORY)
        .await?
        .expect("stored binding");
    assert_eq!(row.key_id, "kid-1");
    assert!(!contains(&row.hmac_sealed, &HMAC));
    assert!(!contains(&row.hmac_sealed, &HMAC[..16]));
    assert!(!contains(&row.hmac_sealed, encoded.as_bytes()));
    let opened = app
        .vault
        .open(
            &EncryptionContext::eab(&org.id, DIRECTORY),
            &row.hmac_sealed,
        )
        .await?;
    assert_eq!(opened.as_slice(), HMAC.as_slice());
    assert!(
        app.vault
            .open(
                &EncryptionContext::acme_account(&org.id, DIRECTORY),
                &row.hmac_sealed
            )
            .await
            .is_err()
    );

    // Setting again (padded base64url this time) replaces key id and key.
    let other_key = [9u8; 16];
    let replaced = client
        .set_external_account_binding(authed(
            set_request("acme", DIRECTORY, "kid-2", &URL_SAFE.encode(other_key)),
            &app.admin_token,
        ))
        .await?
        .into_inner();
    assert_eq!(replaced.key_id, "kid-2");
    assert_eq!(replaced.created_at, binding.created_at);
    let row = app
        .store
        .find_eab_credential(&org.id, DIRECTORY)
        .await?
        .expect("replaced binding");
    let opened = app
        .vault
        .open(
            &EncryptionContext::eab(&org.id, DIRECTORY),
            &row.hmac_sealed,
        )
        .await?;
    assert_eq!(opened.as_slice(), other_key.as_slice());

    let delete = || pb::DeleteExternalAccountBindingRequest {
        organization: "acme".to_owned(),
        directory_url: DIRECTORY.to_owned(),
    };
    client
        .delete_external_account_binding(authed(delete(), &app.admin_token))
        .await?;
    assert!(
        app.store
            .find_eab_credential(&org.id, DIRECTORY)
            .await?
            .is_none()
    );
    let status = failure(
        client
            .delete_external_account_binding(authed(delete(), &app.admin_token))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains(DIRECTORY), "{}", status.message());

    // Audited by the admin, without the key.
    let admin_id = app.admin_token.split('.').nth(1).unwrap_or_default();
    let audit = app.store.audit_entries(&org.id, 50).await?;
    let eab: Vec<_> = audit
        .iter()
        .filter(|entry| entry.action.starts_with("organization.eab_"))
        .collect();
    assert_eq!(
        eab.iter()
            .filter(|entry| entry.action == "organization.eab_set")
            .count(),
        2
    );
    assert_eq!(
        eab.iter()
            .filter(|entry| entry.action == "organization.eab_deleted")
            .count(),
        1
    );
    for entry in eab {
        assert_eq!(entry.actor, admin_id);
        assert!(entry.details.contains(DIRECTORY), "{entry:?}");
        assert!(!entry.details.contains(&encoded), "{entry:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_tokens_cannot_set_an_eab() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.organizations().await?;
    let encoded = URL_SAFE_NO_PAD.encode(HMAC);
    for token in [&org.read, &org.write, &org.bundle] {
        let status = failure(
            client
                .set_external_account_binding(authed(
                    set_request("acme", DIRECTORY, "kid-1", &encoded),
                    token,
                ))
                .await,
        )?;
        assert_eq!(status.code(), Code::PermissionDenied);
        let status = failure(
            client
                .delete_external_account_binding(authed(
                    pb::DeleteExternalAccountBindingRequest {
                        organization: "acme".to_owned(),
                        directory_url: DIRECTORY.to_owned(),
                    },
                    token,
                ))
                .await,
        )?;
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    assert!(
        app.store
            .find_eab_credential(&org.id, DIRECTORY)
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn eab_fields_are_checked_and_the_key_never_echoed() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let org = app.organization("acme").await?;
    let mut client = app.organizations().await?;
    let good = URL_SAFE_NO_PAD.encode(HMAC);
    let short = URL_SAFE_NO_PAD.encode(&HMAC[..15]);
    // Standard base64 of a key with '+' and '/' in it is not base64url.
    let standard = base64::engine::general_purpose::STANDARD.encode([0xfb_u8; 24]);
    let cases: [(pb::SetExternalAccountBindingRequest, &str); 9] = [
        (
            set_request("Bad_Slug", DIRECTORY, "kid", &good),
            "organization: \"Bad_Slug\"",
        ),
        (set_request("acme", "", "kid", &good), "directory_url: \"\""),
        (
            set_request("acme", "http://ca.test/dir", "kid", &good),
            "directory_url: \"http://ca.test/dir\"",
        ),
        (
            set_request("acme", "https:///dir", "kid", &good),
            "directory_url: \"https:///dir\"",
        ),
        (set_request("acme", DIRECTORY, "", &good), "key_id: \"\""),
        (
            set_request("acme", DIRECTORY, "kid 1", &good),
            "key_id: \"kid 1\"",
        ),
        (set_request("acme", DIRECTORY, "kid", ""), "hmac_key: "),
        (set_request("acme", DIRECTORY, "kid", &short), "hmac_key: "),
        (
            set_request("acme", DIRECTORY, "kid", &standard),
            "hmac_key: ",
        ),
    ];
    for (request, expected) in cases {
        let hmac_key = request.hmac_key.clone();
        let status = failure(
            client
                .set_external_account_binding(authed(request, &app.admin_token))
                .await,
        )?;
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{expected}: {}",
            status.message()
        );
        assert!(
            status.message().starts_with(expected),
            "{expected}: {}",
            status.message()
        );
        if !hmac_key.is_empty() {
            assert!(
                !status.message().contains(&hmac_key),
                "{}",
                status.message()
            );
        }
    }
    let status = failure(
        client
            .set_external_account_binding(authed(
                set_request("acme", DIRECTORY, "kid", &short),
                &app.admin_token,
            ))
            .await,
    )?;
    assert!(
        status.message().contains("15 bytes"),
        "{}",
        status.message()
    );
    let status = failure(
        client
            .set_external_account_binding(authed(
                set_request("nobody", DIRECTORY, "kid", &good),
                &app.admin_token,
            ))
            .await,
    )?;
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        app.store
            .find_eab_credential(&org.id, DIRECTORY)
            .await?
            .is_none()
    );
    Ok(())
}
