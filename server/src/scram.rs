//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres does it: the verifier a login keeps instead
//! of its password, and the server side of the exchange that checks a client's proof against
//! it. Only `StoredKey` and `ServerKey` are kept, so a stolen catalog does not log anyone in.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 iterations of new verifiers (Postgres' default).
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 18;

/// Why a SCRAM step failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The client's message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof does not match the verifier: wrong password (or unknown user).
    #[error("wrong password")]
    WrongPassword,
    /// A stored verifier that is not ours.
    #[error("unreadable SCRAM verifier")]
    BadVerifier,
}

/// What a login keeps: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the
/// text Postgres stores in `pg_authid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl Verifier {
    /// A verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        fill_random(&mut salt);
        Self::with_salt(password, salt, ITERATIONS)
    }

    fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        // Postgres hashes the SASLprep'd password, or the raw bytes when it is not valid
        // for SASLprep.
        let prepared = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_owned());
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
            &salt,
            prepared.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations,
            salt,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// The stored text.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
        .into_bytes()
    }

    /// Reads a stored verifier.
    pub fn decode(bytes: &[u8]) -> Result<Self, ScramError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ScramError::BadVerifier)?;
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier)?;
        let (params, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier)?;
        let (iterations, salt) = params.split_once(':').ok_or(ScramError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier)?;
        let key = |s: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(s)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or(ScramError::BadVerifier)
        };
        Ok(Self {
            iterations: iterations.parse().map_err(|_| ScramError::BadVerifier)?,
            salt: B64.decode(salt).map_err(|_| ScramError::BadVerifier)?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// A verifier no password matches, for a login that does not exist: the exchange runs
    /// to its end and fails like a wrong password, so a client cannot probe for names.
    pub fn decoy(name: &str, secret: &[u8; 32]) -> Self {
        let salt = hmac_sha256(secret, name.as_bytes())[..SALT_LEN].to_vec();
        let mut key = [0u8; 32];
        fill_random(&mut key);
        Self {
            iterations: ITERATIONS,
            salt,
            stored_key: key,
            server_key: key,
        }
    }
}

/// Random bytes from the system's generator.
pub fn fill_random(buf: &mut [u8]) {
    // Invariant: the OS generator does not fail on Linux/macOS/Windows once the process runs;
    // ring documents failure only for platforms without one.
    SystemRandom::new()
        .fill(buf)
        .expect("the system random generator is available");
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// The server's half of one exchange, after the client's first message.
#[derive(Debug)]
pub struct Exchange {
    verifier: Verifier,
    /// The gs2 header the client sent (`n,,` or `y,,`), echoed base64 in its final message.
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// Reads the client's first message and answers with the server's first message.
    pub fn start(client_first: &[u8], verifier: Verifier) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first is not UTF-8"))?;
        // gs2-header: a channel-binding flag, an optional authzid, then the bare message.
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(ScramError::Malformed(
                    "channel binding was not offered (use SCRAM-SHA-256)",
                ));
            }
            _ => return Err(ScramError::Malformed("bad channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        let gs2_header = format!("{flag},{authzid},");
        // client-first-bare: `n=<name>,r=<nonce>[,extensions]`; Postgres ignores the name
        // (the startup packet's user is the login) and so do we.
        let mut parts = bare.split(',');
        if !parts.next().is_some_and(|p| p.starts_with("n=")) {
            return Err(ScramError::Malformed("client-first has no user attribute"));
        }
        let client_nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
            .ok_or(ScramError::Malformed("client-first has no nonce"))?;
        let mut server_nonce = [0u8; NONCE_LEN];
        fill_random(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Self {
                verifier,
                gs2_header,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client's final message (its proof); on success, the server's final message
    /// (its own signature, which proves to the client that the server knows the verifier).
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final has no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(ScramError::Malformed("client-final has no channel binding"))?;
        if binding != B64.encode(&self.gs2_header) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final has no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed(
                "proof is not a base64 SHA-256 digest",
            ))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        if !equal_in_constant_time(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::WrongPassword);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, written from RFC 5802 to check the server side against.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&sha256(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails() {
        let verifier = Verifier::new("pencil");
        let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
        for (password, ok) in [("pencil", true), ("pencil2", false), ("", false)] {
            let (exchange, server_first) =
                Exchange::start(format!("n,,{bare}").as_bytes(), verifier.clone()).unwrap();
            let answer = exchange.finish(client_final(password, bare, &server_first).as_bytes());
            assert_eq!(answer.is_ok(), ok, "{password}");
            if !ok {
                assert_eq!(answer, Err(ScramError::WrongPassword));
            }
        }
    }

    #[test]
    fn a_verifier_round_trips_and_holds_no_password() {
        let v = Verifier::new("correct horse");
        let text = String::from_utf8(v.encode()).unwrap();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert!(!text.contains("correct horse"));
        assert_eq!(Verifier::decode(text.as_bytes()).unwrap(), v);
        assert_eq!(
            Verifier::decode(b"md5abc"),
            Err(ScramError::BadVerifier),
            "other formats are refused"
        );
    }

    #[test]
    fn it_matches_the_rfc_7677_example() {
        // RFC 7677 section 3: user "user", password "pencil".
        let v = Verifier::with_salt(
            "pencil",
            B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        );
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let exchange = Exchange {
            verifier: v,
            gs2_header: "n,,".into(),
            client_first_bare: bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let server_final = exchange
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            server_final,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        let v = Verifier::new("x");
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=,r=a",
            b"n,a=b,n=,r=a",
            b"n,,r=a",
            b"\xff",
        ] {
            assert!(Exchange::start(bad, v.clone()).is_err(), "{bad:?}");
        }
        let (exchange, _) = Exchange::start(b"n,,n=,r=abc", v).unwrap();
        for bad in [
            &b""[..],
            b"c=biws",
            b"c=eSws,r=x,p=AAAA",
            b"c=biws,r=abc,p=!!",
        ] {
            assert!(exchange.finish(bad).is_err(), "{bad:?}");
        }
    }
}
