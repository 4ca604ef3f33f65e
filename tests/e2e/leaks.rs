//! What a private key leaked into some bytes would look like, for the tests
//! that scan databases, archives, logs and events for plaintext keys.

/// Byte strings that would show a private key: each PEM body line, the whole
/// body, the DER itself and the DER in hex (how `pg_dump` writes a bytea).
pub fn needles(private_key_pem: &str) -> Vec<Vec<u8>> {
    let lines: Vec<&str> = private_key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let body = lines.concat();
    let (_, der) = x509_parser::pem::parse_x509_pem(private_key_pem.as_bytes()).unwrap();
    let mut needles: Vec<Vec<u8>> = lines
        .iter()
        .filter(|line| line.len() >= 40)
        .map(|line| line.as_bytes().to_vec())
        .collect();
    needles.push(body.into_bytes());
    needles.push(hex(&der.contents).into_bytes());
    needles.push(der.contents);
    needles
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `bytes` one char per byte, so that std's (optimized) substring search
/// works on binary data.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    latin1(haystack).contains(&latin1(needle))
}

/// What in `contents` shows a private key, if anything does.
pub fn leak_in(contents: &[u8], keys: &[String]) -> Option<&'static str> {
    let contents = latin1(contents);
    if contents.contains("PRIVATE KEY") {
        return Some("a PEM private key");
    }
    if contents.contains("key_pkcs8") {
        return Some("ACME account credentials");
    }
    keys.iter()
        .flat_map(|key| needles(key))
        .any(|needle| contents.contains(&latin1(&needle)))
        .then_some("private key material")
}
