//! The CSV token file: the header [`CSV_HEADER`](super::CSV_HEADER), then one token a row.

use zeroize::Zeroizing;

use super::*;

pub(super) const CSV_COLUMNS: [&str; 8] = [
    "user",
    "name",
    "type",
    "secret",
    "algorithm",
    "digits",
    "period",
    "counter",
];

/// Reads a CSV token file: the header [`CSV_HEADER`], then one token a row. Blank lines and
/// lines starting with `#` are skipped, CRLF line ends accepted, fields may be quoted as in
/// RFC 4180 (on one line). Empty `algorithm`, `digits`, `period`, `counter` mean SHA1, 6, 30
/// and 0; `period` of an HOTP row and `counter` of a TOTP row are checked but not used.
pub fn parse_csv(text: &str) -> Result<Vec<TokenRecord>, TokenError> {
    check_size(text)?;
    let text = strip_bom(text);
    let mut header_seen = false;
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let entry = format!("line {}", i + 1);
        let fields = split_csv_line(line).map_err(|why| TokenError::new(&entry, why))?;
        if !header_seen {
            let is_header = fields.len() == CSV_COLUMNS.len()
                && fields
                    .iter()
                    .zip(CSV_COLUMNS)
                    .all(|(f, want)| f.trim().eq_ignore_ascii_case(want));
            if !is_header {
                // Not echoed: without its header, the first line may well be a secret.
                return Err(TokenError::new(
                    entry,
                    format!("the first line must be the header `{CSV_HEADER}`"),
                ));
            }
            header_seen = true;
            continue;
        }
        if out.len() == MAX_RECORDS {
            return Err(TokenError::new(
                entry,
                format!("more than {MAX_RECORDS} tokens in one file; split it"),
            ));
        }
        let record = csv_record(&fields, &entry).map_err(|why| TokenError::new(&entry, why))?;
        out.push(record);
    }
    if !header_seen {
        return Err(TokenError::new(
            WHOLE_FILE,
            format!("it is empty; it must start with the header `{CSV_HEADER}`"),
        ));
    }
    check_duplicates(&out)?;
    Ok(out)
}

pub(super) fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits one line into fields. Unquoted fields are trimmed of spaces and tabs and may not
/// contain `"`; quoted fields keep everything between the quotes, `""` standing for `"`.
/// Fields are zeroized on drop: one of them is the secret.
pub(super) fn split_csv_line(line: &str) -> Result<Vec<Zeroizing<String>>, String> {
    let mut fields = Vec::with_capacity(CSV_COLUMNS.len());
    let mut chars = line.chars().peekable();
    loop {
        if fields.len() > CSV_COLUMNS.len() * 4 {
            return Err(format!(
                "expected {} fields ({CSV_HEADER}), found many more",
                CSV_COLUMNS.len()
            ));
        }
        while chars.next_if(|&c| is_blank(c)).is_some() {}
        let mut field = Zeroizing::new(String::new());
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err("a quoted field has no closing quote".into()),
                    Some('"') => {
                        if chars.next_if_eq(&'"').is_some() {
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(|&c| is_blank(c)).is_some() {}
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text follows a closing quote; quote the whole field".into()),
            }
        } else {
            let mut last = true;
            for c in chars.by_ref() {
                match c {
                    ',' => {
                        last = false;
                        break;
                    }
                    '"' => return Err("a `\"` inside an unquoted field; quote the whole field".into()),
                    c => field.push(c),
                }
            }
            let keep = field.trim_end_matches(is_blank).len();
            field.truncate(keep);
            fields.push(field);
            if last {
                return Ok(fields);
            }
        }
    }
}

pub(super) fn csv_record(fields: &[Zeroizing<String>], entry: &str) -> Result<TokenRecord, String> {
    if fields.len() != CSV_COLUMNS.len() {
        return Err(format!(
            "expected {} fields ({CSV_HEADER}), found {}",
            CSV_COLUMNS.len(),
            fields.len()
        ));
    }
    let user = fields[0].as_str();
    check_user(user)?;
    let name = fields[1].as_str();
    check_name(name)?;
    let kind = match fields[2].trim().to_ascii_lowercase().as_str() {
        "totp" => TokenKind::Totp,
        "hotp" => TokenKind::Hotp,
        "" => return Err("the type is empty; it must be totp or hotp".into()),
        _ => return Err("the type must be totp or hotp".into()),
    };
    let secret = fields[3].trim();
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    let key = decode_base32(secret).ok_or("the secret is not base32 (letters A-Z and digits 2-7)")?;
    check_key_len(key.len())?;
    let algorithm = match fields[4].trim() {
        "" => Algorithm::Sha1,
        a => Algorithm::parse(a).ok_or("the algorithm must be SHA1, SHA256 or SHA512")?,
    };
    let digits = match fields[5].trim() {
        "" => 6,
        d => check_digits(whole_number(d).ok_or(DIGITS_RULE)?)?,
    };
    let period = match fields[6].trim() {
        "" => 30,
        p => check_period(whole_number(p).ok_or(PERIOD_RULE)?)?,
    };
    let counter = match fields[7].trim() {
        "" => 0,
        c => check_counter(whole_number(c))?,
    };
    // Exports often fill every column; the one that does not apply is checked, then unused.
    let (period, counter) = match kind {
        TokenKind::Totp => (period, 0),
        TokenKind::Hotp => (30, counter),
    };
    Ok(TokenRecord {
        user: user.to_string(),
        name: name.to_string(),
        kind,
        key,
        algorithm,
        digits,
        period,
        counter,
        entry: entry.to_string(),
        mac_checked: false,
    })
}
