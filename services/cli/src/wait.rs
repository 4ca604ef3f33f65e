//! `--wait`: follow a certificate through the watch stream (and a poll once a
//! second) until it reaches a goal, fails for good, or time runs out.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use certfleet_proto::v1::{
    self as pb, Certificate, CertificateStatus, GetCertificateRequest, WatchCertificatesRequest,
};
use tokio_stream::StreamExt as _;

use crate::args::{ClientArgs, Output};
use crate::client::{Certificates, status_error};
use crate::output;

pub(crate) type Watch = tonic::Streaming<pb::CertificateEvent>;

pub(crate) async fn open_watch(certificates: &mut Certificates) -> anyhow::Result<Watch> {
    Ok(certificates
        .watch_certificates(WatchCertificatesRequest::default())
        .await
        .map_err(status_error)?
        .into_inner())
}

pub(crate) async fn current_serial(
    certificates: &mut Certificates,
    id: &str,
) -> anyhow::Result<String> {
    let certificate = certificates
        .get_certificate(GetCertificateRequest {
            id: id.to_owned(),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(certificate
        .current
        .map(|version| version.serial)
        .unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Goal {
    Valid,
    /// Valid with a serial other than this one.
    NewSerial(String),
    Revoked,
}

/// Prints the result, or with a watch stream follows the certificate until the
/// goal is reached (exit 0), it failed for good (exit 1) or time ran out (exit 3;
/// clap uses 2 for usage errors).
pub(crate) async fn finish(
    args: &ClientArgs,
    certificates: &mut Certificates,
    certificate: Certificate,
    watch: Option<Watch>,
    goal: Goal,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let Some(mut watch) = watch else {
        print_certificate(args.output, &certificate);
        return Ok(ExitCode::SUCCESS);
    };
    let id = certificate.id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut last_progress = String::new();
    let mut current = certificate;
    let mut watching = true;
    loop {
        let progress = progress_line(&current);
        if progress != last_progress && args.output == Output::Table {
            eprintln!("{progress}");
            last_progress = progress;
        }
        match outcome(&current, &goal) {
            Some(true) => {
                print_certificate(args.output, &current);
                return Ok(ExitCode::SUCCESS);
            }
            Some(false) => {
                print_certificate(args.output, &current);
                eprintln!("error: {}", failure_text(&current));
                return Ok(ExitCode::FAILURE);
            }
            None => {}
        }
        // Wake on an event about this certificate, or poll once a second.
        let wait = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            event = watch.next(), if watching => match event {
                Some(Ok(event)) if event.certificate_id == id
                    && goal == Goal::Revoked
                    && event.r#type == pb::EventType::Failed as i32
                    && event.reason == "revocation" =>
                {
                    print_certificate(args.output, &current);
                    eprintln!("error: {}", event.error);
                    return Ok(ExitCode::FAILURE);
                }
                Some(Ok(_)) => {}
                Some(Err(status)) => {
                    bail!("watching certificate events failed: {}", status.message());
                }
                // The server ended the stream (shutting down): keep polling.
                None => watching = false,
            },
            () = wait => {}
            () = tokio::time::sleep_until(deadline) => {
                print_certificate(args.output, &current);
                eprintln!("error: gave up waiting after {timeout} s; certificate {id} is {}", output::status_name(current.status));
                return Ok(ExitCode::from(3));
            }
        }
        current = certificates
            .get_certificate(GetCertificateRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
    }
}

/// `Some(true)` reached, `Some(false)` failed for good, `None` not yet.
fn outcome(certificate: &Certificate, goal: &Goal) -> Option<bool> {
    let status =
        CertificateStatus::try_from(certificate.status).unwrap_or(CertificateStatus::Unspecified);
    match goal {
        Goal::Revoked => match status {
            CertificateStatus::Revoked => Some(true),
            _ => None,
        },
        Goal::Valid | Goal::NewSerial(_) => {
            let serial = certificate
                .current
                .as_ref()
                .map(|version| version.serial.as_str());
            match status {
                CertificateStatus::Failed => Some(false),
                CertificateStatus::Revoked => Some(false),
                // Still the old version: a renewal that failed for good leaves
                // the certificate valid (or expired) with its last error set.
                CertificateStatus::Valid | CertificateStatus::Expired if matches!(goal, Goal::NewSerial(before) if serial == Some(before.as_str())) => {
                    (!certificate.last_error.is_empty() && certificate.next_attempt_at == 0)
                        .then_some(false)
                }
                CertificateStatus::Valid => Some(true),
                _ => None,
            }
        }
    }
}

fn failure_text(certificate: &Certificate) -> String {
    if certificate.last_error.is_empty() {
        format!(
            "certificate {} is {}",
            certificate.id,
            output::status_name(certificate.status)
        )
    } else {
        certificate.last_error.clone()
    }
}

fn progress_line(certificate: &Certificate) -> String {
    let mut line = format!(
        "{}: {}",
        certificate.id,
        output::status_name(certificate.status)
    );
    if !certificate.last_error.is_empty() && certificate.attempts == 0 {
        line.push_str(&format!(" (last error: {})", certificate.last_error));
    } else if !certificate.last_error.is_empty() {
        line.push_str(&format!(
            " (attempt {} failed: {}",
            certificate.attempts, certificate.last_error
        ));
        if certificate.next_attempt_at != 0 {
            line.push_str(&format!(
                "; next try {}",
                output::timestamp(certificate.next_attempt_at)
            ));
        }
        line.push(')');
    }
    line
}

pub(crate) fn print_certificate(format: Output, certificate: &Certificate) {
    match format {
        Output::Json => println!("{}", output::certificate_json(certificate)),
        Output::Table => println!("{}", output::certificate_details(certificate)),
    }
}
