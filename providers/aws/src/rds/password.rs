//! Master passwords tether generates for databases: from the operating system's
//! CSPRNG, without bias, within RDS's rules.

/// Length of a generated password: about 206 bits of entropy, and within the limit of
/// every engine (MySQL and MariaDB allow 41 characters).
pub const GENERATED_PASSWORD_LENGTH: usize = 32;

/// The characters a generated password uses: printable ASCII without what RDS forbids
/// (`/`, `"`, `@`, space) and without `'`, `\` and `` ` ``, which trip up shells and
/// connection strings.
pub const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-.:;<=>?[]^_{|}~";

/// A password: a value that `Debug` never shows (`expose` does), like the Secret
/// values the runtime reads, whose type it is.
pub type Password = tether_api::external::SecretValue;

/// The operating system could not provide random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(getrandom::Error);

/// A new random password of [`GENERATED_PASSWORD_LENGTH`] characters from
/// [`PASSWORD_ALPHABET`].
pub fn generate() -> Result<Password, RandomnessError> {
    // Rejection sampling: a byte is used only below the largest multiple of the
    // alphabet's size, so every character is equally likely.
    let alphabet_len = PASSWORD_ALPHABET.len();
    let limit = 256 - 256 % alphabet_len;
    let mut password = String::with_capacity(GENERATED_PASSWORD_LENGTH);
    let mut bytes = [0u8; 64];
    while password.len() < GENERATED_PASSWORD_LENGTH {
        getrandom::fill(&mut bytes).map_err(RandomnessError)?;
        for &byte in bytes.iter().filter(|&&b| usize::from(b) < limit) {
            if password.len() == GENERATED_PASSWORD_LENGTH {
                break;
            }
            password.push(char::from(
                PASSWORD_ALPHABET[usize::from(byte) % alphabet_len],
            ));
        }
    }
    Ok(Password::from(password))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_passwords_follow_the_rules() {
        for _ in 0..200 {
            let password = generate().unwrap();
            let text = password.expose();
            assert_eq!(text.len(), GENERATED_PASSWORD_LENGTH);
            assert!(
                text.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)),
                "{text}"
            );
            assert!(!text.contains(['/', '"', '@', ' ', '\'', '\\', '`']));
        }
    }

    #[test]
    fn the_alphabet_is_printable_ascii_without_forbidden_characters() {
        let unique: HashSet<u8> = PASSWORD_ALPHABET.iter().copied().collect();
        assert_eq!(unique.len(), PASSWORD_ALPHABET.len(), "no duplicates");
        assert!(PASSWORD_ALPHABET.iter().all(|b| b.is_ascii_graphic()));
        assert_eq!(
            PASSWORD_ALPHABET.len(),
            94 - 6,
            "printable ASCII less 6 characters"
        );
    }

    #[test]
    fn passwords_do_not_repeat() {
        let passwords: HashSet<String> = (0..1000)
            .map(|_| generate().unwrap().expose().to_owned())
            .collect();
        assert_eq!(passwords.len(), 1000);
    }

    #[test]
    fn a_password_never_prints_itself() {
        let password = Password::from("canary-9d2e".to_owned());
        assert_eq!(format!("{password:?}"), "SecretValue(<redacted>)");
    }
}
