use super::csv::*;
use super::pskc::*;
use super::*;
use crate::otp::{hotp, totp_at_step, Params};
use roxmltree::Document;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tokens/", $name))
    };
}

/// RFC 4226 / RFC 6238 SHA1 seed, ASCII "12345678901234567890".
const SEED20: &[u8] = b"12345678901234567890";
/// RFC 6238 SHA256 seed.
const SEED32: &[u8] = b"12345678901234567890123456789012";
/// RFC 6030 §6.1 (Figure 6) pre-shared key, as a --psk-file would hold it.
const RFC6030_PSK: &str = "12345678901234567890123456789012\n";

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

fn rfc_psk() -> Zeroizing<Vec<u8>> {
    parse_psk_file(RFC6030_PSK).unwrap()
}

fn csv_err(text: &str) -> String {
    parse_csv(text).expect_err("should be refused").to_string()
}

fn pskc_err(text: &str, psk: Option<&[u8]>) -> String {
    parse_pskc(text, psk).expect_err("should be refused").to_string()
}

// ----- CSV -------------------------------------------------------------------------

#[test]
fn csv_good_file_totp_hotp_quoted_name_and_defaults() {
    let r = parse_csv(fixture!("good.csv")).unwrap();
    assert_eq!(r.len(), 3);

    assert_eq!(r[0].user, "alice");
    assert_eq!(r[0].name, "Fob 1, desk drawer");
    assert_eq!(r[0].kind, TokenKind::Totp);
    assert_eq!(r[0].key.as_slice(), SEED20);
    assert_eq!(r[0].algorithm, Algorithm::Sha1);
    assert_eq!((r[0].digits, r[0].period, r[0].counter), (6, 30, 0));
    assert_eq!(r[0].entry, "line 4");

    assert_eq!(r[1].user, "bob");
    assert_eq!(r[1].name, "yubikey-5");
    assert_eq!(r[1].kind, TokenKind::Hotp);
    assert_eq!(r[1].key.as_slice(), SEED20, "lower case with spaces is base32 too");
    assert_eq!((r[1].digits, r[1].period, r[1].counter), (8, 30, 7));
    assert_eq!(r[1].entry, "line 6");
    assert_eq!(hotp(&r[1].key, 7, r[1].algorithm, r[1].digits).as_str(), "82162583");

    assert_eq!(r[2].user, "carol");
    assert_eq!(r[2].name, "token \"42\"");
    assert_eq!(r[2].kind, TokenKind::Totp);
    assert_eq!(r[2].key.as_slice(), SEED32);
    assert_eq!(r[2].algorithm, Algorithm::Sha256);
    assert_eq!((r[2].digits, r[2].period, r[2].counter), (8, 60, 0));
}

#[test]
fn csv_crlf_bom_header_case_and_spaces() {
    let text = "\u{feff}USER, Name ,type,SECRET,algorithm,digits,period,counter\r\n\
                # comment\r\n\
                \r\n\
                \u{20} dave , \"a, b\" , hotp , GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ , SHA512 , 6 , 300 , 4611686018427387904 \r\n";
    let r = parse_csv(text).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].user, "dave");
    assert_eq!(r[0].name, "a, b");
    assert_eq!(r[0].algorithm, Algorithm::Sha512);
    assert_eq!(
        (r[0].period, r[0].counter),
        (30, MAX_COUNTER),
        "an HOTP row's period is unused"
    );
    assert_eq!(r[0].entry, "line 4");
}

#[test]
fn csv_malformed_rows_name_the_line_and_hide_the_secret() {
    const S: &str = "JBSWY3DPEHPK3PXP"; // 80 bits, the shortest accepted
    let long_name = "n".repeat(65);
    let cases: Vec<(String, &str)> = vec![
        (format!("alice,fob,tokn,{S},,,,"), "the type must be totp or hotp"),
        (format!("alice,fob,,{S},,,,"), "the type is empty"),
        ("alice,fob,totp,JBSWY3DPEHPK3PX1,,,,".into(), "the secret is not base32"),
        ("alice,fob,totp,JBSWY3DPEHPK3P08,,,,".into(), "the secret is not base32"),
        ("alice,fob,totp,,,,,".into(), "the secret is empty"),
        (
            "alice,fob,totp,JBSWY3DP,,,,".into(),
            "the secret is 40 bits; 80 to 1024 bits are accepted",
        ),
        (format!("alice,fob,totp,{S},,7,,"), "digits must be 6 or 8"),
        (format!("alice,fob,totp,{S},,six,,"), "digits must be 6 or 8"),
        (format!("alice,fob,totp,{S},,,5,"), "period must be 15 to 300 seconds"),
        (format!("alice,fob,totp,{S},,,301,"), "period must be 15 to 300 seconds"),
        (
            format!("alice,fob,hotp,{S},,,,-1"),
            "the counter must be a whole number",
        ),
        (
            format!("alice,fob,hotp,{S},,,,18446744073709551616"),
            "the counter must be a whole number",
        ),
        (
            format!("alice,fob,totp,{S},MD5,,,"),
            "the algorithm must be SHA1, SHA256 or SHA512",
        ),
        (format!("ali/ce,fob,totp,{S},,,,"), "ali/ce is not a valid user name"),
        (format!("..,fob,totp,{S},,,,"), ".. is not a valid user name"),
        (format!(",fob,totp,{S},,,,"), "the user is empty"),
        (format!("alice,,totp,{S},,,,"), "the device name is empty"),
        (
            format!("alice,{long_name},totp,{S},,,,"),
            "the device name is 65 characters; at most 64",
        ),
        (
            format!("alice,\"fob\u{1b}[2J\",totp,{S},,,,"),
            "the device name has a control character",
        ),
        (
            format!("alice,\" fob\",totp,{S},,,,"),
            "the device name has spaces around it",
        ),
        (format!("alice,\"  \",totp,{S},,,,"), "the device name is empty"),
        (format!("alice,fob,totp,{S},,,"), "expected 8 fields"),
        (format!("alice,fob,totp,{S},,,,,"), "expected 8 fields"),
        (
            format!("alice,\"fob,totp,{S},,,,"),
            "a quoted field has no closing quote",
        ),
        (format!("alice,fo\"b,totp,{S},,,,"), "quote the whole field"),
        (format!("alice,\"fob\"x,totp,{S},,,,"), "text follows a closing quote"),
    ];
    for (row, want) in cases {
        let text = format!("{CSV_HEADER}\nzed,ok,totp,{S},,,,\n{row}\n");
        let err = parse_csv(&text).expect_err(&row);
        assert_eq!(err.entry, "line 3", "{row}");
        let msg = err.to_string();
        assert!(msg.starts_with("line 3: "), "{msg}");
        assert!(msg.contains(want), "{row}: {msg}");
        for secret in [S, "JBSWY3DPEHPK3PX1", "JBSWY3DPEHPK3P08", "JBSWY3DP"] {
            assert!(!msg.to_ascii_uppercase().contains(secret), "{row}: {msg}");
        }
        assert!(!msg.contains('\u{1b}'), "{msg}");
    }
}

#[test]
fn csv_bad_header_and_bad_secret_fixtures() {
    let err = parse_csv(fixture!("bad-header.csv")).unwrap_err();
    assert_eq!(err.entry, "line 1");
    assert!(
        err.why
            .contains("the first line must be the header `user,name,type,secret"),
        "{err}"
    );

    let msg = csv_err(fixture!("bad-secret.csv"));
    assert_eq!(msg, "line 4: the secret is not base32 (letters A-Z and digits 2-7)");
}

#[test]
fn csv_without_header_never_echoes_the_first_row() {
    let msg = csv_err("# seeds\nalice,fob,totp,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,,,\n");
    assert!(msg.starts_with("line 2: the first line must be the header"), "{msg}");
    assert!(!msg.contains("GEZDGNBV") && !msg.contains("alice"), "{msg}");
    assert!(csv_err("").starts_with("the file: it is empty"));
    assert!(csv_err("# only a comment\n\n").starts_with("the file: it is empty"));
}

#[test]
fn csv_same_user_and_device_twice_is_refused() {
    let text = format!("{CSV_HEADER}\nalice,fob,totp,JBSWY3DPEHPK3PXP,,,,\nbob,fob,totp,JBSWY3DPEHPK3PXP,,,,\nalice,FOB,hotp,JBSWY3DPEHPK3PXP,,,,\n");
    assert_eq!(csv_err(&text), "line 4: alice already has a device named FOB (line 2)");
}

#[test]
fn csv_and_pskc_size_and_count_limits() {
    let big = format!("{CSV_HEADER}\n{}", "#".repeat(MAX_INPUT_BYTES));
    assert_eq!(csv_err(&big), "the file: it is larger than 1 MiB; split it");
    let big = format!("<KeyContainer>{}</KeyContainer>", " ".repeat(MAX_INPUT_BYTES));
    assert_eq!(pskc_err(&big, None), "the file: it is larger than 1 MiB; split it");

    let mut rows = String::from(CSV_HEADER);
    for i in 0..=MAX_RECORDS {
        rows.push_str(&format!("\nu{i},f,totp,JBSWY3DPEHPK3PXP,,,,"));
    }
    assert!(rows.len() < MAX_INPUT_BYTES);
    assert_eq!(
        csv_err(&rows),
        "line 10002: more than 10000 tokens in one file; split it"
    );

    let packages = format!(
        "<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">{}</KeyContainer>",
        "<KeyPackage/>".repeat(MAX_RECORDS + 1)
    );
    assert_eq!(
        pskc_err(&packages, None),
        "KeyContainer: more than 10000 KeyPackages in one file; split it"
    );
}

#[test]
fn format_detection() {
    assert_eq!(detect_format(fixture!("good.csv")), TokenFormat::Csv);
    assert_eq!(detect_format(fixture!("rfc6030-figure3.pskcxml")), TokenFormat::Pskc);
    assert_eq!(detect_format("\u{feff} \r\n\t<KeyContainer/>"), TokenFormat::Pskc);
    assert_eq!(
        detect_format("user,name,type,secret,algorithm,digits,period,counter"),
        TokenFormat::Csv
    );
    assert_eq!(detect_format(""), TokenFormat::Csv);
}

#[test]
fn psk_file_is_32_hex_digits_whitespace_tolerated() {
    assert_eq!(
        hex(&parse_psk_file("12345678 90123456\n78901234 56789012\n").unwrap()),
        "12345678901234567890123456789012"
    );
    assert_eq!(
        hex(&parse_psk_file("\u{feff}ABCDEF0123456789abcdef0123456789").unwrap()),
        "abcdef0123456789abcdef0123456789"
    );
    let short = parse_psk_file("1234567890123456789012345678901")
        .unwrap_err()
        .to_string();
    assert_eq!(
        short,
        "the pre-shared key file: it must hold 32 hex digits (an AES-128 key), not 31"
    );
    let long = parse_psk_file("123456789012345678901234567890123456789012345678").unwrap_err();
    assert!(long.why.ends_with("not 48"), "{long}");
    let bad = parse_psk_file("1234567890123456789012345678901g")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("not a hex digit") && !bad.contains("12345"), "{bad}");
    assert!(parse_psk_file("").is_err());
}

#[test]
fn debug_and_display_never_show_the_key() {
    let r = parse_csv(fixture!("good.csv")).unwrap();
    let dbg = format!("{:?}", r[0]);
    assert!(dbg.contains("alice") && dbg.contains("<20 bytes, not shown>"), "{dbg}");
    assert!(!dbg.contains("49, 50, 51") && !dbg.contains("1234567890"), "{dbg}");
    let e = TokenError::new("line 4", "digits must be 6 or 8");
    assert_eq!(e.to_string(), "line 4: digits must be 6 or 8");
}

// ----- PSKC ------------------------------------------------------------------------

#[test]
fn pskc_rfc6030_figure3_plain_hotp() {
    // RFC 6030 Figure 3 verbatim: the plain-value HOTP example with device and user.
    let r = parse_pskc(fixture!("rfc6030-figure3.pskcxml"), None).unwrap();
    assert_eq!(r.len(), 1);
    let t = &r[0];
    assert_eq!(t.key.as_slice(), SEED20);
    assert_eq!(hex(&t.key), "3132333435363738393031323334353637383930");
    assert_eq!(t.kind, TokenKind::Hotp);
    assert_eq!((t.digits, t.counter), (8, 0));
    assert_eq!(t.algorithm, Algorithm::Sha1);
    // Key/UserId wins over DeviceInfo/UserId; kept as given.
    assert_eq!(t.user, "UID=jsmith,DC=example-bank,DC=net");
    assert_eq!(t.name, "token 987654321");
    assert_eq!(t.entry, "KeyPackage 1 (Id 12345678)");
    // RFC 4226 Appendix D: counter 0 truncates to 1284755224.
    assert_eq!(hotp(&t.key, t.counter, t.algorithm, t.digits).as_str(), "84755224");
}

#[test]
fn pskc_rfc6030_figure2_has_no_user_and_a_32_bit_secret() {
    let figure2 = fixture!("rfc6030-figure2.pskcxml");
    assert_eq!(
        pskc_err(figure2, None),
        "KeyPackage 1 (Id 12345678): it has no UserId (in its Key or DeviceInfo) naming the account the token is for"
    );
    // Its secret is "1234": with a user added it is refused as far too short.
    let with_user = figure2.replace("<Issuer>", "<UserId>alice</UserId><Issuer>");
    assert_eq!(
        pskc_err(&with_user, None),
        "KeyPackage 1 (Id 12345678): the secret is 32 bits; 80 to 1024 bits are accepted"
    );
}

#[test]
fn pskc_totp_with_time_interval_and_8_digits_and_hotp_with_counter() {
    let r = parse_pskc(fixture!("totp-and-hotp.pskcxml"), None).unwrap();
    assert_eq!(r.len(), 2);
    let totp = &r[0];
    assert_eq!(totp.kind, TokenKind::Totp);
    assert_eq!((totp.user.as_str(), totp.name.as_str()), ("alice", "token TT0000001"));
    assert_eq!((totp.digits, totp.period, totp.counter), (8, 30, 0));
    assert_eq!(totp.algorithm, Algorithm::Sha256);
    assert_eq!(totp.key.as_slice(), SEED32);
    assert_eq!(totp.entry, "KeyPackage 1 (Id TT0000001#1)");
    // RFC 6238 Appendix B, SHA256 at T = 59 s.
    let p = Params::new(totp.algorithm, totp.digits, totp.period).unwrap();
    assert_eq!(totp_at_step(&totp.key, p.step_at(59), &p).as_str(), "46119246");

    let hotp_rec = &r[1];
    assert_eq!(hotp_rec.kind, TokenKind::Hotp);
    assert_eq!(hotp_rec.user, "bob", "DeviceInfo/UserId when the Key has none");
    assert_eq!(hotp_rec.name, "token 987654", "the Key Id when there is no SerialNo");
    assert_eq!((hotp_rec.digits, hotp_rec.counter), (6, 42));
    assert_eq!(hotp_rec.key.as_slice(), SEED20);
    assert_eq!(hotp_rec.entry, "KeyPackage 2 (Id 987654)");
}

#[test]
fn pskc_rfc6030_figure6_decrypts_with_the_rfc_psk() {
    // RFC 6030 Figure 6 (AES-128-CBC, pre-shared key 12345678901234567890123456789012,
    // HMAC-SHA1 ValueMAC) with only a <UserId> added.
    let psk = rfc_psk();
    let r = parse_pskc(fixture!("rfc6030-figure6-userid.pskcxml"), Some(&psk)).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(hex(&r[0].key), "3132333435363738393031323334353637383930");
    assert_eq!((r[0].kind, r[0].digits, r[0].counter), (TokenKind::Hotp, 8, 0));
    assert_eq!((r[0].user.as_str(), r[0].name.as_str()), ("alice", "token 987654321"));
}

#[test]
fn pskc_rfc6030_figure6_mac_key_and_value_mac() {
    // The RFC states the MAC key: 1122334455667788990011223344556677889900.
    let text = fixture!("rfc6030-figure6.pskcxml");
    let doc = Document::parse(text).unwrap();
    let psk = rfc_psk();
    let crypto = Crypto::new(doc.root_element(), Some(&psk)).unwrap();
    assert_eq!(
        hex(crypto.mac_key.as_deref().unwrap()),
        "1122334455667788990011223344556677889900"
    );
    // ... and the ValueMAC is HMAC-SHA1 over IV || ciphertext with it.
    let secret = doc.descendants().find(|n| n.has_tag_name((PSKC_NS, "Secret"))).unwrap();
    let cipher = encrypted_bytes(pskc(secret, "EncryptedValue").unwrap().unwrap()).unwrap();
    assert_eq!(
        &cipher[..16],
        &(0u8..16).collect::<Vec<_>>()[..],
        "the RFC's IV is 00 01 .. 0f"
    );
    let tag = base64_value("Su+NvtQfmvfJzF6bmQiJqoLRExc=").unwrap();
    assert!(MacAlg::Sha1.verify(crypto.mac_key.as_deref().unwrap(), &cipher, &tag));
    assert_eq!(
        hex(&crypto.secret(secret).unwrap().0),
        "3132333435363738393031323334353637383930"
    );
}

#[test]
fn pskc_encrypted_without_psk_asks_for_it() {
    assert_eq!(
        pskc_err(fixture!("rfc6030-figure6-userid.pskcxml"), None),
        "KeyPackage 1 (Id 12345678): the secret is encrypted; give the pre-shared key with --psk-file \
         (the file calls it Pre-shared-key)"
    );
}

#[test]
fn pskc_wrong_psk_is_refused() {
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    for wrong in ["12345678901234567890123456789013", "00000000000000000000000000000000"] {
        let psk = parse_psk_file(wrong).unwrap();
        let msg = pskc_err(text, Some(&psk));
        assert!(msg.contains("wrong pre-shared key (--psk-file)"), "{msg}");
        assert!(!msg.contains(wrong) && !msg.contains("3132333435"), "{msg}");
    }
    // Without MACMethod and ValueMAC, the padding alone catches it.
    let no_mac = strip_mac(text);
    let psk = parse_psk_file("00000000000000000000000000000000").unwrap();
    let msg = pskc_err(&no_mac, Some(&psk));
    assert_eq!(
        msg,
        "KeyPackage 1 (Id 12345678): it does not decrypt (bad padding): wrong pre-shared key (--psk-file), \
         or the file was altered"
    );
    // ... and the right key still works without them.
    let r = parse_pskc(&no_mac, Some(&rfc_psk())).unwrap();
    assert_eq!(r[0].key.as_slice(), SEED20);
    // A key of the wrong size never reaches AES.
    assert!(pskc_err(text, Some(&[0u8; 15])).starts_with("the pre-shared key: it is 15 bytes"));
}

fn strip_mac(text: &str) -> String {
    let start = text.find("<MACMethod").unwrap();
    let end = text.find("</MACMethod>").unwrap() + "</MACMethod>".len();
    let s = format!("{}{}", &text[..start], &text[end..]);
    let start = s.find("<ValueMAC>").unwrap();
    let end = s.find("</ValueMAC>").unwrap() + "</ValueMAC>".len();
    format!("{}{}", &s[..start], &s[end..])
}

#[test]
fn pskc_tampered_mac_or_ciphertext_is_refused() {
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let psk = rfc_psk();
    let tampered_mac = text.replace("Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Tu+NvtQfmvfJzF6bmQiJqoLRExc=");
    let tampered_cipher = text.replace("+cIHItlB3Wra1DUpx", "+cIHItlB3Wra1DUpy");
    for t in [tampered_mac, tampered_cipher] {
        assert_ne!(t, text);
        assert_eq!(
            pskc_err(&t, Some(&psk)),
            "KeyPackage 1 (Id 12345678): the secret's ValueMAC does not match: wrong pre-shared key \
             (--psk-file), or the file was altered"
        );
    }
    let not_base64 = text.replace("Su+NvtQfmvfJzF6bmQiJqoLRExc=", "not base64!");
    assert!(pskc_err(&not_base64, Some(&psk)).ends_with("the secret's ValueMAC is not base64"));
}

#[test]
fn pskc_other_encryption_is_refused_by_name() {
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let psk = rfc_psk();
    let aes256 = text.replace("#aes128-cbc", "#aes256-cbc");
    let msg = pskc_err(&aes256, Some(&psk));
    assert!(
        msg.contains("http://www.w3.org/2001/04/xmlenc#aes256-cbc; only AES-128-CBC"),
        "{msg}"
    );

    let pbkdf2 = text.replace(
        "<ds:KeyName>Pre-shared-key</ds:KeyName>",
        "<xenc11:DerivedKey xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\">\
         <xenc11:MasterKeyName>My Password 1</xenc11:MasterKeyName></xenc11:DerivedKey>",
    );
    for psk in [None, Some(&psk[..])] {
        let msg = pskc_err(&pbkdf2, psk);
        assert!(msg.contains("derived from a passphrase (PBKDF2)"), "{msg}");
    }
    let x509 = text.replace(
        "<ds:KeyName>Pre-shared-key</ds:KeyName>",
        "<ds:X509Data><ds:X509Certificate>MIIB</ds:X509Certificate></ds:X509Data>",
    );
    assert!(pskc_err(&x509, None).contains("encrypted to a certificate"));
}

#[test]
fn pskc_missing_userid_names_the_key_package() {
    // Figure 6 verbatim has no UserId; the check comes before any decryption.
    let msg = pskc_err(fixture!("rfc6030-figure6.pskcxml"), Some(&rfc_psk()));
    assert!(msg.starts_with("KeyPackage 1 (Id 12345678): it has no UserId"), "{msg}");
    // The second package of a file, without a Key Id.
    let text = fixture!("totp-and-hotp.pskcxml")
        .replace("<pskc:UserId>bob</pskc:UserId>", "")
        .replace(" Id=\"987654\"", "");
    let err = parse_pskc(&text, None).unwrap_err();
    assert_eq!(err.entry, "KeyPackage 2");
    assert!(err.why.starts_with("it has no UserId"), "{err}");
    let bad_user = fixture!("totp-and-hotp.pskcxml").replace(">bob<", ">../bob<");
    assert_eq!(
        pskc_err(&bad_user, None),
        "KeyPackage 2 (Id 987654): UserId: ../bob is not a valid user name"
    );
}

#[test]
fn pskc_unknown_algorithm_is_refused() {
    assert_eq!(
        pskc_err(fixture!("unknown-algorithm.pskcxml"), None),
        "KeyPackage 1 (Id OC0000001): algorithm urn:ietf:params:xml:ns:keyprov:pskc:ocra is not supported; \
         only HOTP and TOTP tokens can be imported"
    );
}

#[test]
fn pskc_parameters_outside_what_pam_totp_does_are_refused() {
    let base = fixture!("totp-and-hotp.pskcxml");
    let cases = [
        ("Length=\"8\"", "Length=\"7\"", "KeyPackage 1 (Id TT0000001#1): ResponseFormat Length: digits must be 6 or 8"),
        ("Length=\"8\" Encoding=\"DECIMAL\"", "Length=\"8\" Encoding=\"HEXADECIMAL\"", "ResponseFormat Encoding HEXADECIMAL is not supported"),
        ("Length=\"8\" Encoding=\"DECIMAL\"", "Length=\"8\" Encoding=\"DECIMAL\" CheckDigits=\"true\"", "CheckDigits"),
        ("<pskc:PlainValue>30</pskc:PlainValue>", "<pskc:PlainValue>5</pskc:PlainValue>", "Data/TimeInterval (the TOTP period) must be 15 to 300 seconds"),
        ("<pskc:Time>\n                    <pskc:PlainValue>0<", "<pskc:Time>\n                    <pskc:PlainValue>1234<", "Data/Time (the TOTP start time T0) is not 0"),
        ("<pskc:PlainValue>42</pskc:PlainValue>", "<pskc:PlainValue>-1</pskc:PlainValue>", "KeyPackage 2 (Id 987654): Data/Counter is not a whole number"),
        ("<pskc:Suite>HMAC-SHA256</pskc:Suite>", "<pskc:Suite>HMAC-MD5</pskc:Suite>", "Suite HMAC-MD5 is not supported"),
        ("<pskc:KeyUsage>OTP</pskc:KeyUsage>\n            </pskc:Policy>\n        </pskc:Key>\n    </pskc:KeyPackage>\n    <pskc:KeyPackage>", "<pskc:KeyUsage>Encrypt</pskc:KeyUsage>\n            </pskc:Policy>\n        </pskc:Key>\n    </pskc:KeyPackage>\n    <pskc:KeyPackage>", "its Policy KeyUsage does not include OTP"),
        ("PINUsageMode=\"Local\"", "PINUsageMode=\"Prepend\"", "PINUsageMode Prepend"),
        ("<pskc:SerialNo>TT0000001</pskc:SerialNo>", "<pskc:SerialNo>TT0000001 and a long story about this fob, which a vendor put in its serial</pskc:SerialNo>", "the device name is 81 characters; at most 64"),
        ("MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</pskc:PlainValue>", "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA</pskc:PlainValue>", "the secret's PlainValue is not base64"),
        ("<pskc:UserId>bob</pskc:UserId>", "<pskc:UserId>alice</pskc:UserId><pskc:SerialNo>TT0000001</pskc:SerialNo>", "KeyPackage 2 (Id 987654): alice already has a device named token TT0000001 (KeyPackage 1 (Id TT0000001#1))"),
    ];
    for (from, to, want) in cases {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "{from}");
        let msg = pskc_err(&text, None);
        assert!(msg.contains(want), "{to}: {msg}");
        assert!(!msg.contains("MTIzNDU2"), "{msg}");
    }
    // The SHA1 spellings vendors use.
    let sha1 = base.replace("HMAC-SHA256", "HMAC-SHA-1").replace(
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=",
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=",
    );
    assert_eq!(parse_pskc(&sha1, None).unwrap()[0].algorithm, Algorithm::Sha1);
}

#[test]
fn pskc_truncated_or_foreign_xml_is_refused() {
    let msg = pskc_err(fixture!("truncated.pskcxml"), None);
    assert!(msg.starts_with("the file: it is not well-formed XML: "), "{msg}");
    let msg = pskc_err("<html><body/></html>", None);
    assert!(msg.starts_with("the file: it is XML but not PSKC"), "{msg}");
    let msg = pskc_err("<KeyContainer Version=\"1.0\"><KeyPackage/></KeyContainer>", None);
    assert!(msg.contains("not PSKC"), "no namespace: {msg}");
    let msg = pskc_err(&format!("<KeyContainer Version=\"2.0\" xmlns=\"{PSKC_NS}\"/>"), None);
    assert_eq!(msg, "KeyContainer: Version 2.0 is not supported; only 1.0 (RFC 6030)");
    let msg = pskc_err(&format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\"/>"), None);
    assert_eq!(msg, "KeyContainer: it has no KeyPackage");
    let msg = pskc_err(
        &format!("<KeyContainer xmlns=\"{PSKC_NS}\"><KeyPackage/></KeyContainer>"),
        None,
    );
    assert_eq!(msg, "KeyPackage 1: it has no Key");
}

#[test]
fn pskc_doctype_and_entities_are_refused() {
    let msg = pskc_err(fixture!("doctype-entity.pskcxml"), None);
    assert_eq!(
        msg,
        "the file: it has a DOCTYPE; PSKC files have none, and entities are never expanded, so it is refused"
    );
    // Even an empty internal subset, or a bare entity reference without a DOCTYPE.
    let figure3 = fixture!("rfc6030-figure3.pskcxml");
    let with_doctype = figure3.replacen(
        "<KeyContainer",
        "<!DOCTYPE KeyContainer SYSTEM \"http://example.invalid/x.dtd\">\n<KeyContainer",
        1,
    );
    assert!(pskc_err(&with_doctype, None).contains("DOCTYPE"));
    let with_entity = figure3.replace(">987654321<", ">&xxe;<");
    let msg = pskc_err(&with_entity, None);
    assert!(msg.starts_with("the file: it is not well-formed XML"), "{msg}");
}

// ----- Counters, namespaces, nesting ---------------------------------------------

#[test]
fn counters_above_the_secret_files_limit_are_refused_with_their_entry() {
    let row =
        |c: &str| format!("{CSV_HEADER}\nalice,fob,hotp,JBSWY3DPEHPK3PXP,,,,1\nbob,fob,hotp,JBSWY3DPEHPK3PXP,,,,{c}\n");
    assert_eq!(parse_csv(&row("4611686018427387904")).unwrap()[1].counter, MAX_COUNTER);
    for c in ["4611686018427387905", "18446744073709551615", "99999999999999999999"] {
        assert_eq!(
            csv_err(&row(c)),
            "line 3: the counter must be a whole number from 0 to 4611686018427387904",
            "{c}"
        );
    }
    // A TOTP row's counter is checked too, though unused.
    let totp = format!("{CSV_HEADER}\nalice,fob,totp,JBSWY3DPEHPK3PXP,,,,18446744073709551615\n");
    assert!(csv_err(&totp).starts_with("line 2: the counter must be"));

    let base = fixture!("totp-and-hotp.pskcxml");
    let at = |c: &str| {
        base.replace(
            "<pskc:PlainValue>42</pskc:PlainValue>",
            &format!("<pskc:PlainValue>{c}</pskc:PlainValue>"),
        )
    };
    assert_eq!(
        parse_pskc(&at("4611686018427387904"), None).unwrap()[1].counter,
        MAX_COUNTER
    );
    assert_eq!(
        pskc_err(&at("4611686018427387905"), None),
        "KeyPackage 2 (Id 987654): Data/Counter: the counter must be a whole number from 0 to 4611686018427387904"
    );
    assert_eq!(
        pskc_err(&at("18446744073709551615"), None),
        "KeyPackage 2 (Id 987654): Data/Counter: the counter must be a whole number from 0 to 4611686018427387904"
    );
}

/// RFC 6030 figure 6 (with a UserId) with `extra` put into its Secret before the
/// EncryptedValue.
fn figure6_with(extra: &str) -> String {
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let out = text.replacen("<EncryptedValue>", &format!("{extra}<EncryptedValue>"), 1);
    assert_ne!(out, text);
    out
}

/// A plain 160-bit key that is not the figure's ("AAAA..."), base64.
const OTHER_KEY_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUE=";

#[test]
fn pskc_plain_value_next_to_an_encrypted_one_is_refused() {
    let psk = rfc_psk();
    // In a foreign namespace: a reader going by local names took it, unauthenticated.
    let foreign = figure6_with(&format!(
        "<x:PlainValue xmlns:x=\"urn:not-pskc\">{OTHER_KEY_B64}</x:PlainValue>"
    ));
    for key in [Some(&psk[..]), None] {
        let msg = pskc_err(&foreign, key);
        assert_eq!(
            msg,
            "KeyPackage 1 (Id 12345678): Secret holds a PlainValue in namespace urn:not-pskc, not in \
             urn:ietf:params:xml:ns:keyprov:pskc; the file is refused rather than guess which value counts"
        );
    }
    // In no namespace at all.
    let none = figure6_with(&format!("<PlainValue xmlns=\"\">{OTHER_KEY_B64}</PlainValue>"));
    let msg = pskc_err(&none, Some(&psk));
    assert!(msg.contains("Secret holds a PlainValue in no namespace"), "{msg}");
    // In the PSKC namespace, next to the encrypted value: which one counts is unclear.
    let both = figure6_with(&format!("<PlainValue>{OTHER_KEY_B64}</PlainValue>"));
    for key in [Some(&psk[..]), None] {
        assert_eq!(
            pskc_err(&both, key),
            "KeyPackage 1 (Id 12345678): Data/Secret holds both a PlainValue and an EncryptedValue; the plain \
             one is not protected by the encryption or its MAC, so the file is refused"
        );
    }
    // Two of either.
    let two = fixture!("rfc6030-figure3.pskcxml").replacen(
        "</PlainValue>",
        &format!("</PlainValue><PlainValue>{OTHER_KEY_B64}</PlainValue>"),
        1,
    );
    assert_eq!(
        pskc_err(&two, None),
        "KeyPackage 1 (Id 12345678): Secret holds 2 PlainValue elements; one is allowed"
    );
    // The untampered file still imports.
    let r = parse_pskc(fixture!("rfc6030-figure6-userid.pskcxml"), Some(&psk)).unwrap();
    assert_eq!(r[0].key.as_slice(), SEED20);
}

#[test]
fn pskc_with_a_pre_shared_key_refuses_plain_keys() {
    let psk = rfc_psk();
    // A whole plain file where an encrypted one was expected ...
    for plain in [fixture!("rfc6030-figure3.pskcxml"), fixture!("totp-and-hotp.pskcxml")] {
        assert!(parse_pskc(plain, None).is_ok());
        let msg = pskc_err(plain, Some(&psk));
        assert!(msg.contains("the file mixes encrypted and plain keys"), "{msg}");
        assert!(msg.starts_with("KeyPackage 1 "), "{msg}");
    }
    // ... or a plain package added to an encrypted file.
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let second = "<KeyPackage><DeviceInfo><SerialNo>666</SerialNo></DeviceInfo>\
                  <Key Id=\"666\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\">\
                  <Data><Secret><PlainValue>QUFBQUFBQUFBQUFBQUFBQUFBQUE=</PlainValue></Secret></Data>\
                  <UserId>alice</UserId></Key></KeyPackage>";
    let mixed = text.replace("</KeyContainer>", &format!("{second}</KeyContainer>"));
    let err = parse_pskc(&mixed, Some(&psk)).unwrap_err();
    assert_eq!(err.entry, "KeyPackage 2 (Id 666)");
    assert!(err.why.contains("the file mixes encrypted and plain keys"), "{err}");
}

#[test]
fn pskc_elements_read_must_be_in_their_namespace() {
    let base = fixture!("totp-and-hotp.pskcxml");
    let foreign = |from: &str, to: &str| {
        let t = base.replacen(from, to, 1);
        assert_ne!(t, base, "{from}");
        pskc_err(&t, None)
    };
    let cases = [
        (
            "<pskc:PlainValue>42</pskc:PlainValue>",
            "<x:PlainValue xmlns:x=\"urn:x\">7</x:PlainValue>",
            "KeyPackage 2 (Id 987654): Counter holds a PlainValue in namespace urn:x",
        ),
        (
            "<pskc:Counter>",
            "<x:Counter xmlns:x=\"urn:x\"><x:PlainValue>7</x:PlainValue></x:Counter><pskc:Counter>",
            "KeyPackage 2 (Id 987654): Data holds a Counter in namespace urn:x",
        ),
        (
            "<pskc:TimeInterval>",
            "<TimeInterval><pskc:PlainValue>60</pskc:PlainValue></TimeInterval><pskc:TimeInterval>",
            "KeyPackage 1 (Id TT0000001#1): Data holds a TimeInterval in no namespace",
        ),
        (
            "<pskc:UserId>alice</pskc:UserId>",
            "<x:UserId xmlns:x=\"urn:x\">root</x:UserId><pskc:UserId>alice</pskc:UserId>",
            "Key holds a UserId in namespace urn:x",
        ),
        (
            "<pskc:SerialNo>TT0000001</pskc:SerialNo>",
            "<x:SerialNo xmlns:x=\"urn:x\">1</x:SerialNo>",
            "DeviceInfo holds a SerialNo in namespace urn:x",
        ),
        (
            "<pskc:ResponseFormat Length=\"8\"",
            "<x:ResponseFormat xmlns:x=\"urn:x\" Length=\"6\"/><pskc:ResponseFormat Length=\"8\"",
            "AlgorithmParameters holds a ResponseFormat in namespace urn:x",
        ),
        (
            "<pskc:Suite>HMAC-SHA256</pskc:Suite>",
            "<x:Suite xmlns:x=\"urn:x\">HMAC-SHA1</x:Suite><pskc:Suite>HMAC-SHA256</pskc:Suite>",
            "AlgorithmParameters holds a Suite in namespace urn:x",
        ),
        (
            "<pskc:KeyUsage>OTP</pskc:KeyUsage>",
            "<x:KeyUsage xmlns:x=\"urn:x\">OTP</x:KeyUsage>",
            "Policy holds a KeyUsage in namespace urn:x",
        ),
        (
            "<pskc:Key Id=\"987654\"",
            "<x:Key xmlns:x=\"urn:x\"/><pskc:Key Id=\"987654\"",
            "KeyPackage 2: KeyPackage holds a Key in namespace urn:x",
        ),
        (
            "<pskc:KeyPackage>",
            "<KeyPackage/><pskc:KeyPackage>",
            "KeyContainer: KeyContainer holds a KeyPackage in no namespace",
        ),
        (
            "<pskc:UserId>alice</pskc:UserId>",
            "<pskc:UserId>alice</pskc:UserId><pskc:UserId>root</pskc:UserId>",
            "Key holds 2 UserId elements; one is allowed",
        ),
    ];
    for (from, to, want) in cases {
        let msg = foreign(from, to);
        assert!(msg.contains(want), "{to}: {msg}");
    }

    // xmlenc's elements in xmlenc's namespace, the ValueMAC in PSKC's.
    let psk = rfc_psk();
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let tampered = [
        (
            text.replacen("<xenc:CipherValue>", "<CipherValue>", 2).replacen("</xenc:CipherValue>", "</CipherValue>", 2),
            "CipherData holds a CipherValue in namespace urn:ietf:params:xml:ns:keyprov:pskc, not in http://www.w3.org/2001/04/xmlenc#",
        ),
        (
            text.replace("<ValueMAC>", "<x:ValueMAC xmlns:x=\"urn:x\">").replace("</ValueMAC>", "</x:ValueMAC>"),
            "Secret holds a ValueMAC in namespace urn:x",
        ),
        (
            text.replace("<ds:KeyName>Pre-shared-key</ds:KeyName>", "<KeyName>Pre-shared-key</KeyName>"),
            "KeyContainer: EncryptionKey holds a KeyName in namespace urn:ietf:params:xml:ns:keyprov:pskc",
        ),
    ];
    for (t, want) in tampered {
        let msg = pskc_err(&t, Some(&psk));
        assert!(msg.contains(want), "{msg}");
    }
    // Prefixes do not matter: the same file with other prefixes imports.
    let renamed = text.replace("xmlns:xenc=", "xmlns:e=").replace("xenc:", "e:").replace(
        "xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"",
        "xmlns:p=\"urn:ietf:params:xml:ns:keyprov:pskc\"",
    );
    let renamed = prefix_unprefixed(&renamed, "p");
    assert_eq!(parse_pskc(&renamed, Some(&psk)).unwrap()[0].key.as_slice(), SEED20);
}

/// Gives every element without a prefix the prefix `p`.
fn prefix_unprefixed(text: &str, p: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (open, name_start) = if rest.starts_with("</") { ("</", 2) } else { ("<", 1) };
        let name: String = rest[name_start..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == ':')
            .collect();
        if !name.is_empty() && !name.contains(':') && rest[name_start..].starts_with(|c: char| c.is_alphabetic()) {
            out.push_str(&format!("{open}{p}:"));
            rest = &rest[name_start..];
        } else {
            out.push_str(open);
            rest = &rest[name_start..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn pskc_value_mac_covers_the_key_only_so_a_changed_user_id_still_checks() {
    let psk = rfc_psk();
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let r = parse_pskc(text, Some(&psk)).unwrap();
    assert_eq!((r[0].user.as_str(), r[0].mac_checked), ("alice", true));
    // What the MAC does not cover: the user (and the device name, the parameters).
    let to_root = text
        .replace(">alice<", ">root<")
        .replace("987654321", "1")
        .replace("Length=\"8\"", "Length=\"6\"");
    let r = parse_pskc(&to_root, Some(&psk)).unwrap();
    assert_eq!(
        (r[0].user.as_str(), r[0].name.as_str(), r[0].digits, r[0].mac_checked),
        ("root", "token 1", 6, true)
    );
    // No MAC checked: plain keys, CSV rows.
    assert!(!parse_pskc(fixture!("rfc6030-figure3.pskcxml"), None).unwrap()[0].mac_checked);
    assert!(!parse_csv(fixture!("good.csv")).unwrap()[0].mac_checked);
}

#[test]
fn pskc_encrypted_value_without_its_value_mac_is_refused_when_the_file_has_a_mac_method() {
    let text = fixture!("rfc6030-figure6-userid.pskcxml");
    let start = text.find("<ValueMAC>").unwrap();
    let end = text.find("</ValueMAC>").unwrap() + "</ValueMAC>".len();
    let no_value_mac = format!("{}{}", &text[..start], &text[end..]);
    assert_eq!(
        pskc_err(&no_value_mac, Some(&rfc_psk())),
        "KeyPackage 1 (Id 12345678): the secret has no ValueMAC, though the file has a MACMethod: it may have \
         been altered"
    );
}

fn nested(n: usize) -> String {
    format!(
        "<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">{}{}</KeyContainer>",
        "<a>".repeat(n),
        "</a>".repeat(n)
    )
}

#[test]
fn pskc_deeply_nested_elements_are_refused_before_parsing() {
    let want = "the file: its elements are nested more than 64 deep; a token file needs about 10";
    for n in [100, 2_000, 50_000] {
        assert_eq!(pskc_err(&nested(n), None), want, "{n}");
    }
    // Unclosed, and self-closing at the bottom.
    let open = format!("<KeyContainer xmlns=\"{PSKC_NS}\">{}", "<a x='1'>".repeat(50_000));
    assert_eq!(pskc_err(&open, None), want);
    // 63 inside the container is fine (then refused for what it is).
    assert_eq!(pskc_err(&nested(63), None), "KeyContainer: it has no KeyPackage");
    assert_eq!(pskc_err(&nested(64), None), want);
    // What is not an element is not counted: comments, CDATA, processing instructions,
    // `/>`, and `>` or `/>` inside quoted attribute values.
    let flat = format!(
        "<?xml version=\"1.0\"?><KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\
         <!-- {} --><![CDATA[{}]]><?pi {} ?>{}{}{}</KeyContainer>",
        "<a>".repeat(100),
        "<a>".repeat(100),
        "<a>".repeat(100),
        "<a/>".repeat(100),
        "<a x=\"/>\" y='>'></a>".repeat(100),
        "<a b='/>'>".repeat(60) + &"</a>".repeat(60)
    );
    assert_eq!(pskc_err(&flat, None), "KeyContainer: it has no KeyPackage");
    // The real files pass.
    for f in [fixture!("rfc6030-figure3.pskcxml"), fixture!("totp-and-hotp.pskcxml")] {
        check_markup(f).unwrap();
    }
}

/// [`parse_pskc`] of `text`, which must be refused within half a second (on a thread,
/// so a parse that takes hours fails the test instead of hanging it); the message.
fn refused_fast(text: String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let r = parse_pskc(&text, None).map(|_| ()).map_err(|e| e.to_string());
        let _ = tx.send((r, start.elapsed()));
    });
    match rx.recv_timeout(std::time::Duration::from_millis(500)) {
        Ok((Err(msg), took)) => {
            assert!(took < std::time::Duration::from_millis(500), "{took:?}");
            msg
        }
        Ok((Ok(()), _)) => panic!("accepted"),
        Err(_) => panic!("still parsing after half a second"),
    }
}

#[test]
fn pskc_with_thousands_of_namespace_declarations_or_attributes_is_refused_fast_before_parsing() {
    // Elements nested 60 deep, each declaring 50 namespaces, then 48 000 elements each
    // declaring one more: the parser copies every namespace in scope into each element
    // that declares its own, comparing each with the others — hours for these 0.8 MB.
    let mut hostile = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n");
    for level in 0..60 {
        hostile.push_str("<a");
        for i in 0..50 {
            hostile.push_str(&format!(" xmlns:n{level}x{i}=\"u\""));
        }
        hostile.push_str(">\n");
    }
    hostile.push_str(&"<b xmlns:z=\"u\"/>".repeat(48_000));
    hostile.push_str(&"</a>".repeat(60));
    hostile.push_str("</KeyContainer>");
    assert!(
        hostile.len() > 750_000 && hostile.len() < MAX_INPUT_BYTES,
        "{}",
        hostile.len()
    );
    assert_eq!(
        refused_fast(hostile),
        "the file: its element at line 3 has more than 64 namespace declarations in scope (xmlns \
         attributes on it and on the elements it is in); a token file needs about 5: ask the vendor for a \
         new export"
    );
    // The same within the attribute limit: 60 nested elements declaring 2 each.
    let mut nested_ns = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n");
    for level in 0..60 {
        nested_ns.push_str(&format!("<a xmlns:n{level}=\"u\" xmlns:m{level}=\"u\">\n"));
    }
    nested_ns.push_str(&"<b xmlns:z=\"u\"/>".repeat(20_000));
    nested_ns.push_str(&"</a>".repeat(60));
    nested_ns.push_str("</KeyContainer>");
    assert_eq!(
        refused_fast(nested_ns),
        "the file: its element at line 33 has more than 64 namespace declarations in scope (xmlns \
         attributes on it and on the elements it is in); a token file needs about 5: ask the vendor for a \
         new export"
    );
    // One element with 30 000 attributes: the parser compares each with all the others.
    let mut attrs = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n<a");
    for i in 0..30_000 {
        attrs.push_str(&format!(" a{i}=\"\""));
    }
    attrs.push_str("/></KeyContainer>");
    assert_eq!(
        refused_fast(attrs),
        "the file: its element at line 2 has more than 64 attributes (namespace declarations included); \
         a token file has at most a few: ask the vendor for a new export"
    );
}

#[test]
fn pskc_attribute_and_namespace_limits_leave_room_for_real_files() {
    // 64 attributes on an element, 64 namespaces in scope: read (then refused for what
    // the file is not).
    let attrs: String = (0..63).map(|i| format!(" a{i}='>'")).collect();
    let text = format!("<KeyContainer xmlns=\"{PSKC_NS}\"><a{attrs}/></KeyContainer>");
    assert_eq!(pskc_err(&text, None), "KeyContainer: it has no KeyPackage");
    let decls: String = (0..63).map(|i| format!(" xmlns:n{i}=\"u\"")).collect();
    let text = format!("<KeyContainer xmlns=\"{PSKC_NS}\"{decls}><a/></KeyContainer>");
    assert_eq!(pskc_err(&text, None), "KeyContainer: it has no KeyPackage");
    // One more is refused; `xmlns` and `=` inside quoted values, comments, CDATA are not
    // counted.
    let text = format!("<KeyContainer xmlns=\"{PSKC_NS}\"{decls}><a xmlns:x='u'/></KeyContainer>");
    assert!(pskc_err(&text, None).contains("more than 64 namespace declarations in scope"));
    let quoted = format!(
        "<KeyContainer xmlns=\"{PSKC_NS}\"><a b='{}' c=\"{}\"/><!-- {} --><![CDATA[{}]]></KeyContainer>",
        "xmlns=".repeat(100),
        "xmlns:x='' =".repeat(100),
        "<a xmlns:x='u'>".repeat(100),
        "<a xmlns:x='u'>".repeat(100)
    );
    assert_eq!(pskc_err(&quoted, None), "KeyContainer: it has no KeyPackage");
    // Declarations are counted in scope, not in the file: a vendor export that declares
    // the namespaces again in each of 2 000 KeyPackages is read.
    let mut many = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n");
    for i in 0..2_000 {
        many.push_str(&format!(
            "<KeyPackage xmlns=\"{PSKC_NS}\" xmlns:ds=\"{DS_NS}\" xmlns:xenc=\"{XENC_NS}\">\
             <DeviceInfo><SerialNo>{i}</SerialNo></DeviceInfo>\
             <Key Id=\"{i}\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\"><Data><Secret>\
             <PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret></Data>\
             <UserId>user{i}</UserId></Key></KeyPackage>\n"
        ));
    }
    many.push_str("</KeyContainer>\n");
    assert!(many.len() < MAX_INPUT_BYTES, "{}", many.len());
    assert_eq!(parse_pskc(&many, None).unwrap().len(), 2_000);
    for f in [
        fixture!("rfc6030-figure2.pskcxml"),
        fixture!("rfc6030-figure3.pskcxml"),
        fixture!("rfc6030-figure6.pskcxml"),
        fixture!("totp-and-hotp.pskcxml"),
    ] {
        check_markup(f).unwrap();
    }
}
