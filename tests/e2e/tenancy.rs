//! One organization's tokens never reach another organization's certificates.

use std::time::Duration;

use certfleet_e2e::certfleet_testkit::PebbleOptions;
use certfleet_e2e::{TestEnv, bundle, is_valid, request, wait_for};
use certfleet_proto::v1::{
    self as pb, DeleteCertificateRequest, GetCertificateRequest, ListCertificatesRequest,
    RenewCertificateRequest, RevokeCertificateRequest,
};

#[tokio::test(flavor = "multi_thread")]
async fn another_organization_sees_nothing() {
    let env = TestEnv::start(PebbleOptions::default()).await.unwrap();
    let (mut owner, mut owner_bundle) = env.organization("owner").await;
    let (mut intruder, mut intruder_bundle) = env.organization("intruder").await;
    let created = owner
        .create_certificate(request(&["owner.test"], pb::KeyType::EcdsaP256))
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut owner, &created.id, Duration::from_secs(30), is_valid)
        .await
        .unwrap();

    let unknown = "01900000-0000-7000-8000-000000000000";
    for id in [created.id.as_str(), unknown] {
        let not_found = |status: tonic::Status| {
            assert_eq!(status.code(), tonic::Code::NotFound, "{id}: {status:?}");
            status.message().replace(id, "<id>")
        };
        let messages = [
            not_found(
                intruder
                    .get_certificate(GetCertificateRequest {
                        id: id.to_owned(),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err(),
            ),
            not_found(
                intruder
                    .renew_certificate(RenewCertificateRequest { id: id.to_owned() })
                    .await
                    .unwrap_err(),
            ),
            not_found(
                intruder
                    .revoke_certificate(RevokeCertificateRequest {
                        id: id.to_owned(),
                        reason: pb::RevocationReason::KeyCompromise as i32,
                    })
                    .await
                    .unwrap_err(),
            ),
            not_found(
                intruder
                    .delete_certificate(DeleteCertificateRequest { id: id.to_owned() })
                    .await
                    .unwrap_err(),
            ),
            not_found(
                bundle(&mut intruder_bundle, id)
                    .await
                    .map(|_| ())
                    .unwrap_err()
                    .downcast::<tonic::Status>()
                    .unwrap(),
            ),
        ];
        // Another organization's certificate and a missing one answer alike.
        for message in &messages {
            assert_eq!(message, &messages[0].clone(), "{messages:?}");
        }
    }
    let listed = intruder
        .list_certificates(ListCertificatesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.certificates.is_empty());

    // The owner's certificate is untouched and still works for the owner.
    let still = wait_for(&mut owner, &created.id, Duration::from_secs(5), is_valid)
        .await
        .unwrap();
    assert_eq!(still.current.unwrap().version, 1);
    assert!(bundle(&mut owner_bundle, &created.id).await.is_ok());
    env.stop().await;
}
