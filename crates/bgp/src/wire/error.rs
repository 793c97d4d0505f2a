//! Decoding errors, each carrying the NOTIFICATION that RFC 4271 §6 prescribes for it.

use super::notification::Notification;

/// A message that cannot be accepted; the session answers with [`DecodeError::notification`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {notification}")]
pub struct DecodeError {
    /// What is wrong, for logs.
    pub reason: &'static str,
    /// The NOTIFICATION to send before closing.
    pub notification: Notification,
}

impl DecodeError {
    pub(crate) fn new(reason: &'static str, code: u8, subcode: u8) -> DecodeError {
        DecodeError { reason, notification: Notification::new(code, subcode) }
    }

    pub(crate) fn with_data(
        reason: &'static str,
        code: u8,
        subcode: u8,
        data: impl Into<Vec<u8>>,
    ) -> DecodeError {
        DecodeError { reason, notification: Notification::with_data(code, subcode, data) }
    }
}
