//! age's scrypt recipient (passphrase encryption) and age's ASCII armor: the format of Sigil's
//! passphrase-protected key files. Such a file is an ordinary armored age file, so `age -d`
//! (or rage) opens it as well, and the test suite checks it against rage.
//!
//! ```text
//! -----BEGIN AGE ENCRYPTED FILE-----
//! <base64 of: age-encryption.org/v1
//!             -> scrypt <16-byte salt, base64> <log2 N>
//!             <file key wrapped by ChaCha20-Poly1305 under scrypt(passphrase), base64>
//!             --- <HMAC-SHA-256 of the header, base64>
//!             <nonce><payload>>
//! -----END AGE ENCRYPTED FILE-----
//! ```
//!
//! The wrapping key is scrypt (N = 2^log2N, r = 8, p = 1) of the passphrase, salted with
//! `age-encryption.org/v1/scrypt` followed by the salt; the scrypt stanza must be the only one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64_PADDED;
use zeroize::Zeroizing;

use super::{B64, Header, b64_exact, bad, open, seal, unwrap_file_key, wrap_file_key};
use crate::{CryptoError, random};

/// The work factor (log2 N) Sigil encrypts with: age's, about a second on a current CPU and
/// 256 MiB of memory.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// The largest work factor accepted when decrypting, as age's default (2^22: 4 GiB of memory);
/// a file asking for more is refused before any work is done.
pub const MAX_WORK_FACTOR: u8 = 22;

const LABEL: &[u8] = b"age-encryption.org/v1/scrypt";
const BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const END: &str = "-----END AGE ENCRYPTED FILE-----";
const COLUMNS: usize = 64;

/// Why a passphrase-encrypted file could not be opened. Says nothing about the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassphraseError {
    /// The passphrase does not open the file (or the file was altered).
    #[error("wrong passphrase, or the file was altered")]
    Wrong,
    /// The file is not a passphrase-encrypted age file, or is malformed.
    #[error("{0}")]
    Format(CryptoError),
    /// The file asks for more work than [`MAX_WORK_FACTOR`] (or the caller's maximum).
    #[error("the file's scrypt work factor {0} is above the maximum {1}")]
    WorkFactor(u8, u8),
}

impl From<CryptoError> for PassphraseError {
    fn from(e: CryptoError) -> Self {
        PassphraseError::Format(e)
    }
}

/// Encrypts `plaintext` with `passphrase` (work factor `log_n`, 1 to 30) into a binary age file.
pub fn encrypt(passphrase: &[u8], plaintext: &[u8], log_n: u8) -> Result<Vec<u8>, CryptoError> {
    if passphrase.is_empty() {
        return Err(bad("an empty passphrase protects nothing"));
    }
    let salt = random::bytes::<16>()?;
    let file_key = Zeroizing::new(random::bytes::<16>()?);
    let body = wrap_file_key(&*derive(passphrase, &salt, log_n)?, &file_key)?;
    let mut header = super::INTRO.to_vec();
    header.extend_from_slice(format!("-> scrypt {} {log_n}\n", B64.encode(salt)).as_bytes());
    // 32 bytes are 43 base64 characters: one line, shorter than 64.
    header.extend_from_slice(B64.encode(&body).as_bytes());
    header.push(b'\n');
    seal(&file_key, header, plaintext)
}

/// Opens a binary age file encrypted with a passphrase, if its work factor is at most
/// `max_log_n` (normally [`MAX_WORK_FACTOR`]).
pub fn decrypt(
    passphrase: &[u8],
    file: &[u8],
    max_log_n: u8,
) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    let header = Header::parse(file)?;
    let [stanza] = &header.stanzas[..] else {
        return Err(bad("age header: a passphrase-encrypted file has exactly one stanza").into());
    };
    if stanza.kind != b"scrypt" {
        return Err(bad("not a passphrase-encrypted age file").into());
    }
    let [salt, log_n] = &stanza.args[..] else {
        return Err(bad("age header: scrypt stanza takes two arguments").into());
    };
    let salt = b64_exact::<16>(salt)?;
    let log_n = parse_work_factor(log_n)?;
    if log_n > max_log_n {
        return Err(PassphraseError::WorkFactor(log_n, max_log_n));
    }
    let wrap_key = derive(passphrase, &salt, log_n)?;
    let file_key = unwrap_file_key(&wrap_key, &stanza.body).ok_or(PassphraseError::Wrong)?;
    open(&file_key, &header, file).map_err(|_| PassphraseError::Wrong)
}

/// Decimal, no leading zero, 1 to 30 (as age).
fn parse_work_factor(text: &[u8]) -> Result<u8, CryptoError> {
    let invalid = || bad("age header: invalid scrypt work factor");
    if text.is_empty() || text.len() > 2 || text[0] == b'0' || !text.iter().all(u8::is_ascii_digit)
    {
        return Err(invalid());
    }
    let n: u8 = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(invalid)?;
    if n > 30 {
        return Err(invalid());
    }
    Ok(n)
}

fn derive(
    passphrase: &[u8],
    salt: &[u8; 16],
    log_n: u8,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let params = scrypt::Params::new(log_n, 8, 1).map_err(|_| bad("invalid scrypt work factor"))?;
    let mut full_salt = LABEL.to_vec();
    full_salt.extend_from_slice(salt);
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase, &full_salt, &params, &mut key[..])
        .map_err(|_| bad("invalid scrypt output length"))?;
    Ok(key)
}

/// age's ASCII armor: the file in padded base64, 64 columns, between the BEGIN and END lines.
pub fn armor(file: &[u8]) -> String {
    let encoded = B64_PADDED.encode(file);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / COLUMNS + 80);
    out.push_str(BEGIN);
    out.push('\n');
    for line in encoded.as_bytes().chunks(COLUMNS) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// Whether `text` looks like an age file, armored or binary (what a key file reader uses to
/// tell a protected key file from a plain one).
pub fn is_age_file(text: &[u8]) -> bool {
    let trimmed = text.trim_ascii_start();
    trimmed.starts_with(BEGIN.as_bytes()) || trimmed.starts_with(super::INTRO)
}

/// The binary file inside age's armor. Surrounding whitespace is ignored; inside, every line
/// but the last has exactly 64 characters, the last 1 to 64, and the base64 is canonical.
pub fn dearmor(text: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let text = std::str::from_utf8(text.trim_ascii()).map_err(|_| bad("armor: not text"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some(BEGIN) {
        return Err(bad("armor: no BEGIN AGE ENCRYPTED FILE line"));
    }
    let mut encoded = String::new();
    let mut ended = false;
    let mut short = false;
    for line in lines.by_ref() {
        if line == END {
            ended = true;
            break;
        }
        if short || line.is_empty() || line.len() > COLUMNS {
            return Err(bad(
                "armor: lines must have 64 characters, the last 1 to 64",
            ));
        }
        short = line.len() < COLUMNS;
        encoded.push_str(line);
    }
    if !ended || lines.next().is_some() {
        return Err(bad("armor: no END line, or text after it"));
    }
    if encoded.is_empty() {
        return Err(bad("armor: empty"));
    }
    B64_PADDED
        .decode(&encoded)
        .map_err(|_| bad("armor: invalid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Work factor 10 keeps the tests fast; the format does not depend on it.
    const LOW: u8 = 10;

    #[test]
    fn round_trips_through_the_armor() {
        for size in [0, 1, 47, 48, 49, 64 * 1024 + 3] {
            let pt: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let file = encrypt(b"correct horse", &pt, LOW).unwrap();
            let text = armor(&file);
            assert!(is_age_file(text.as_bytes()));
            assert!(
                text.lines()
                    .all(|l| l.len() <= 64 || l.starts_with("-----"))
            );
            let back = dearmor(text.as_bytes()).unwrap();
            assert_eq!(back, file);
            assert_eq!(&decrypt(b"correct horse", &back, LOW).unwrap()[..], &pt[..]);
            assert_eq!(
                decrypt(b"correct horsf", &back, LOW).unwrap_err(),
                PassphraseError::Wrong
            );
        }
    }

    #[test]
    fn fail_bad_work_factors_and_stanzas() {
        let file = encrypt(b"pw", b"secret", LOW).unwrap();
        assert_eq!(
            decrypt(b"pw", &file, LOW - 1).unwrap_err(),
            PassphraseError::WorkFactor(LOW, LOW - 1)
        );
        let text = String::from_utf8_lossy(&file).into_owned();
        let line = text.lines().nth(1).unwrap().to_owned();
        for bad_line in [
            line.replace(" 10", " 010"),
            line.replace(" 10", " 31"),
            line.replace(" 10", " 0"),
            line.replace(" 10", " +9"),
            line.replace(" 10", ""),
            line.replace(" 10", " 10 x"),
            line.replace("scrypt", "X25519"),
        ] {
            let f = text.replacen(&line, &bad_line, 1).into_bytes();
            assert!(
                matches!(decrypt(b"pw", &f, 30), Err(PassphraseError::Format(_))),
                "{bad_line}"
            );
        }
        // A scrypt stanza beside another is refused (age: it must be alone).
        let stanza = format!("{line}\n{}\n", text.lines().nth(2).unwrap());
        let two = text.replacen(&stanza, &format!("{stanza}{stanza}"), 1);
        assert_ne!(two, text);
        assert!(decrypt(b"pw", two.as_bytes(), 30).is_err());
        // Every flipped byte is refused.
        for i in 0..file.len() {
            let mut t = file.clone();
            t[i] ^= 1;
            assert!(decrypt(b"pw", &t, LOW).is_err(), "byte {i}");
        }
        assert!(encrypt(b"", b"x", LOW).is_err());
        // An X25519 envelope is not a passphrase file, and the other way round.
        let key = crate::EncryptionKey::generate().unwrap();
        let env = super::super::encrypt(&[key.public()], b"x").unwrap();
        assert!(matches!(
            decrypt(b"pw", &env, 30),
            Err(PassphraseError::Format(_))
        ));
        assert!(super::super::decrypt(&key, &file).is_err());
        assert!(super::super::recipient_count(&file).is_err());
    }

    #[test]
    fn fail_malformed_armor() {
        let text = armor(&encrypt(b"pw", b"a key file's text", LOW).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        let body = &lines[1..lines.len() - 1];
        assert!(body.len() >= 2, "the test needs two base64 lines");
        let join = |ls: &[&str]| ls.join("\n") + "\n";
        let mut cases = vec![
            text.replace("BEGIN AGE", "BEGIN AGX"),
            text.replace("-----END AGE ENCRYPTED FILE-----\n", ""),
            text.clone() + "trailing",
            text.replacen('\n', "\n\n", 2),
            text.replace('A', "*"),
        ];
        // A short line before the last.
        let mut short = lines.clone();
        let first = &body[0][..63];
        short[1] = first;
        cases.push(join(&short));
        // A line longer than 64.
        let mut long = lines.clone();
        let joined = format!("{}{}", body[0], &body[1][..1]);
        long[1] = &joined;
        cases.push(join(&long));
        for c in cases {
            assert!(dearmor(c.as_bytes()).is_err(), "{c}");
        }
        // Surrounding whitespace and CRLF line ends are fine.
        let crlf = format!("\n  {}  \n", text.replace('\n', "\r\n"));
        assert!(dearmor(crlf.as_bytes()).is_ok());
        assert!(!is_age_file(b"SIGIL-SECRET-KEY-1..."));
    }
}
