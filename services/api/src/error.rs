//! The one error type of the API and its exhaustive mapping to gRPC status codes.

use certfleet_core::InputError;
use certfleet_dns::SettingError;
use certfleet_store::StoreError;
use certfleet_vault::VaultError;
use tonic::Status;
use tonic::metadata::MetadataValue;

/// Metadata key carrying the id of the certificate an ALREADY_EXISTS answer refers to.
pub const EXISTING_ID_METADATA: &str = "certfleet-existing-id";

/// The message of every authentication failure; one message so that a caller
/// cannot tell a wrong secret from an unknown token.
pub const UNAUTHENTICATED_MESSAGE: &str = "invalid or missing bearer token";

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request value was rejected; the message names the field and the value.
    #[error(transparent)]
    InvalidArgument(#[from] InputError),
    /// A DNS provider setting was rejected; the message names the setting
    /// (and the value, unless it is a secret).
    #[error(transparent)]
    InvalidSetting(#[from] SettingError),
    /// A notification channel setting was rejected; the message names the
    /// setting and the value (never a secret's value).
    #[error(transparent)]
    InvalidChannel(#[from] certfleet_notify::ValidationError),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    AlreadyExists {
        message: String,
        /// The existing resource, sent in [`EXISTING_ID_METADATA`].
        existing_id: Option<String>,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{UNAUTHENTICATED_MESSAGE}")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    /// The database cannot be reached right now; the caller may retry.
    #[error("{context}: {source}")]
    Unavailable {
        context: &'static str,
        source: StoreError,
    },
    #[error("{context}: {source}")]
    Store {
        context: &'static str,
        source: StoreError,
    },
    #[error("{context}: {source}")]
    Vault {
        context: &'static str,
        source: VaultError,
    },
    /// A DNS provider or the DNS could not be reached, or the record did not
    /// propagate in time; the message says which, and the caller may retry.
    #[error("{0}")]
    DnsUnavailable(String),
    /// Stored data the API cannot interpret, or another fault of ours.
    #[error("{0}")]
    Internal(String),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl ApiError {
    /// Maps a store error. `missing` is the NOT_FOUND message of the resource
    /// the call was about (e.g. `certificate X not found`).
    pub fn from_store(context: &'static str, missing: &str, error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound => ApiError::NotFound(missing.to_owned()),
            StoreError::AlreadyExists { existing_id } => ApiError::AlreadyExists {
                message: format!(
                    "an active certificate for these names already exists: {existing_id}"
                ),
                existing_id: Some(existing_id),
            },
            StoreError::Conflict(what) => ApiError::AlreadyExists {
                message: format!("{what} already exists"),
                existing_id: None,
            },
            StoreError::InUse(why) => ApiError::FailedPrecondition(why),
            StoreError::Unavailable(_) => ApiError::Unavailable {
                context,
                source: error,
            },
            StoreError::LeaseLost
            | StoreError::InvalidUrl { .. }
            | StoreError::Migration(_)
            | StoreError::Query(_) => ApiError::Store {
                context,
                source: error,
            },
        }
    }

    /// A store error where no resource can be missing (e.g. an insert).
    pub fn store(context: &'static str, error: StoreError) -> ApiError {
        ApiError::from_store(context, "not found", error)
    }

    pub fn vault(context: &'static str, error: VaultError) -> ApiError {
        ApiError::Vault {
            context,
            source: error,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument(input) => Status::invalid_argument(input.to_string()),
            ApiError::InvalidSetting(setting) => Status::invalid_argument(setting.to_string()),
            ApiError::InvalidChannel(setting) => Status::invalid_argument(setting.to_string()),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::AlreadyExists {
                message,
                existing_id,
            } => {
                let mut status = Status::already_exists(message);
                if let Some(value) =
                    existing_id.and_then(|id| MetadataValue::try_from(id.as_str()).ok())
                {
                    status.metadata_mut().insert(EXISTING_ID_METADATA, value);
                }
                status
            }
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::Unauthenticated => Status::unauthenticated(UNAUTHENTICATED_MESSAGE),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::Unavailable { context, source } => {
                tracing::warn!(%context, error = %source, "database unavailable");
                Status::unavailable("service unavailable, retry later")
            }
            ApiError::DnsUnavailable(message) => Status::unavailable(message),
            ApiError::Store { context, source } => {
                tracing::error!(%context, error = %source, "store error");
                Status::internal("internal error")
            }
            ApiError::Vault { context, source } => {
                tracing::error!(%context, error = %source, "vault error");
                Status::internal("internal error")
            }
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Status::internal("internal error")
            }
            ApiError::Reflection(source) => {
                tracing::error!(error = %source, "reflection error");
                Status::internal("internal error")
            }
            ApiError::Transport(source) => {
                tracing::error!(error = %source, "transport error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_keep_their_message() {
        let status = Status::from(ApiError::InvalidArgument(InputError::new(
            "names[2]",
            "exa mple.com",
            "is not a valid DNS name",
        )));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "names[2]: \"exa mple.com\" is not a valid DNS name"
        );
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let error = ApiError::store(
            "list certificates",
            StoreError::Migration("table certificates is missing".to_owned()),
        );
        let status = Status::from(error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn already_exists_carries_the_id() {
        let error = ApiError::store(
            "create certificate",
            StoreError::AlreadyExists {
                existing_id: "0190-abc".to_owned(),
            },
        );
        let status = Status::from(error);
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        assert!(status.message().ends_with("0190-abc"));
        let id = status.metadata().get(EXISTING_ID_METADATA);
        assert_eq!(id.and_then(|value| value.to_str().ok()), Some("0190-abc"));
    }

    #[test]
    fn missing_resources_use_the_given_message() {
        let status = Status::from(ApiError::from_store(
            "get certificate",
            "certificate x not found",
            StoreError::NotFound,
        ));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "certificate x not found");
    }
}
