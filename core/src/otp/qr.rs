//! Terminal QR codes of an otpauth URI (for `pam-totp enroll` and enrollment at login).
//!
//! `utf8`: two module rows per text line with the half blocks ▀ ▄ █, drawn black on white
//! with ANSI colours when writing to a terminal, so a phone reads it on dark and light
//! themes alike. `ascii`: `##` per dark module, for terminals without Unicode (light
//! background). Both keep the 4-module quiet zone the QR standard asks for.

use qrcode::{Color, EcLevel, QrCode};

pub const QUIET: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrMode {
    Utf8,
    Ascii,
    None,
}

/// The module matrix with the quiet zone: `true` = dark.
fn matrix(data: &str) -> Result<Vec<Vec<bool>>, String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot make a QR code: {e}"))?;
    let w = code.width();
    let colors = code.to_colors();
    let size = w + 2 * QUIET;
    let mut m = vec![vec![false; size]; size];
    for y in 0..w {
        for x in 0..w {
            m[y + QUIET][x + QUIET] = colors[y * w + x] == Color::Dark;
        }
    }
    Ok(m)
}

/// Why a QR code could not be drawn (the data does not fit one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrError(pub String);

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QrError {}

impl std::ops::Deref for QrError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<QrError> for String {
    fn from(e: QrError) -> String {
        e.0
    }
}

pub fn render(data: &str, mode: QrMode, ansi: bool) -> Result<String, QrError> {
    render_text(data, mode, ansi).map_err(QrError)
}

fn render_text(data: &str, mode: QrMode, ansi: bool) -> Result<String, String> {
    let m = matrix(data)?;
    let mut out = String::new();
    match mode {
        QrMode::None => {}
        QrMode::Ascii => {
            for row in &m {
                for &dark in row {
                    out.push_str(if dark { "##" } else { "  " });
                }
                out.push('\n');
            }
        }
        QrMode::Utf8 => {
            let size = m.len();
            for y in (0..size).step_by(2) {
                if ansi {
                    out.push_str("\x1b[30;107m");
                }
                let empty = vec![false; size];
                let lower = m.get(y + 1).unwrap_or(&empty);
                for (&top, &bottom) in m[y].iter().zip(lower) {
                    out.push(match (top, bottom) {
                        (true, true) => '█',
                        (true, false) => '▀',
                        (false, true) => '▄',
                        (false, false) => ' ',
                    });
                }
                if ansi {
                    out.push_str("\x1b[0m");
                }
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a utf8 rendering back into modules (the inverse of `render`).
    fn parse_utf8(text: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in text.lines() {
            let line = line.replace("\x1b[30;107m", "").replace("\x1b[0m", "");
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in line.chars() {
                top.push(c == '█' || c == '▀');
                bottom.push(c == '█' || c == '▄');
            }
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn utf8_rendering_round_trips_to_the_module_matrix() {
        let uri =
            "otpauth://totp/h:a@h?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=h&algorithm=SHA1&digits=6&period=30";
        let m = matrix(uri).unwrap();
        for ansi in [false, true] {
            let back = parse_utf8(&render(uri, QrMode::Utf8, ansi).unwrap());
            assert_eq!(&back[..m.len()], &m[..], "ansi={ansi}");
        }
        let ascii = render(uri, QrMode::Ascii, false).unwrap();
        assert_eq!(ascii.lines().count(), m.len());
        assert!(render(uri, QrMode::None, true).unwrap().is_empty());
    }
}
