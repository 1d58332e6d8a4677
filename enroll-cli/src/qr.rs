//! `--qr` choices; the drawing is in the core (pam_totp_core::otp::qr), shared with the module.

pub use pam_totp_core::otp::qr::render;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QrMode {
    Utf8,
    Ascii,
    None,
}

impl From<QrMode> for pam_totp_core::otp::qr::QrMode {
    fn from(m: QrMode) -> Self {
        match m {
            QrMode::Utf8 => pam_totp_core::otp::qr::QrMode::Utf8,
            QrMode::Ascii => pam_totp_core::otp::qr::QrMode::Ascii,
            QrMode::None => pam_totp_core::otp::qr::QrMode::None,
        }
    }
}
