//! SSH key pairs that tether generates for instances: ed25519, from the operating
//! system's CSPRNG, in the OpenSSH formats `ssh` and EC2's `ImportKeyPair` read.

use ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The message never includes the key itself.
    #[error("ssh-privatekey is not an OpenSSH private key ({0})")]
    Parse(ssh_key::Error),
    #[error("encoding the key in OpenSSH format failed ({0})")]
    Encode(ssh_key::Error),
}

/// A new ed25519 private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`),
/// unencrypted, for the connection Secret's `ssh-privatekey`.
pub fn generate(comment: &str) -> Result<Vec<u8>, Error> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(Error::Random)?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let pem = key.to_openssh(LineEnding::LF).map_err(Error::Encode)?;
    Ok(pem.as_bytes().to_vec())
}

/// The public key (`ssh-ed25519 AAAA… comment`) of an OpenSSH private key.
pub fn public_key(private_key: &[u8]) -> Result<String, Error> {
    let key = PrivateKey::from_openssh(private_key).map_err(Error::Parse)?;
    key.public_key().to_openssh().map_err(Error::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_a_fresh_ed25519_key_in_openssh_format() {
        let first = generate("shop/web").expect("a key");
        let second = generate("shop/web").expect("a key");
        assert_ne!(first, second, "every key is new");
        let text = String::from_utf8(first.clone()).expect("text");
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(text.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
        let public = public_key(&first).expect("its public key");
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        assert!(public.ends_with(" shop/web"), "{public}");
    }

    #[test]
    fn a_damaged_key_is_refused_without_showing_it() {
        let error = public_key(b"-----BEGIN OPENSSH PRIVATE KEY-----\ncanary\n").unwrap_err();
        assert!(!error.to_string().contains("canary"), "{error}");
    }
}
