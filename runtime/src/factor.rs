//! Authentication factors and NIST SP 800-63B revision 3 assurance levels.
//!
//! Factors are a closed set, so a set of factors is one `u64` bitset with bit
//! `f as u64` for factor `f`. Assurance levels are computed from fixed
//! combination masks, so deciding a level is a handful of bitwise operations
//! with no branch on the factors present.

/// The built-in factors, in declaration order (which fixes their bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Factor {
    Password,
    RecoveryCode,
    Sms,
    Push,
    Email,
    Totp,
    HardwareOtp,
    Webauthn,
    Passkey,
    SecurityKey,
    Piv,
    ClientCert,
    ApiKey,
    WorkloadToken,
    Federated,
}

impl Factor {
    pub const ALL: [Factor; 15] = [
        Factor::Password,
        Factor::RecoveryCode,
        Factor::Sms,
        Factor::Push,
        Factor::Email,
        Factor::Totp,
        Factor::HardwareOtp,
        Factor::Webauthn,
        Factor::Passkey,
        Factor::SecurityKey,
        Factor::Piv,
        Factor::ClientCert,
        Factor::ApiKey,
        Factor::WorkloadToken,
        Factor::Federated,
    ];

    pub const COUNT: usize = Factor::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            Factor::Password => "password",
            Factor::RecoveryCode => "recovery_code",
            Factor::Sms => "sms",
            Factor::Push => "push",
            Factor::Email => "email",
            Factor::Totp => "totp",
            Factor::HardwareOtp => "hardware_otp",
            Factor::Webauthn => "webauthn",
            Factor::Passkey => "passkey",
            Factor::SecurityKey => "security_key",
            Factor::Piv => "piv",
            Factor::ClientCert => "client_cert",
            Factor::ApiKey => "api_key",
            Factor::WorkloadToken => "workload_token",
            Factor::Federated => "federated",
        }
    }

    pub fn from_name(name: &str) -> Option<Factor> {
        Factor::ALL
            .iter()
            .copied()
            .find(|factor| factor.name() == name)
    }

    pub fn from_index(index: usize) -> Option<Factor> {
        Factor::ALL.get(index).copied()
    }

    pub const fn bit(self) -> u64 {
        1 << self as u64
    }
}

/// Builds a factor bitset from a list of factors.
pub const fn mask(factors: &[Factor]) -> u64 {
    let mut bits = 0;
    let mut i = 0;
    while i < factors.len() {
        bits |= factors[i].bit();
        i += 1;
    }
    bits
}

/// Returns the name of every factor in `bits`, sorted by bit.
pub fn names_of(bits: u64) -> Vec<&'static str> {
    Factor::ALL
        .iter()
        .filter(|factor| bits & factor.bit() != 0)
        .map(|factor| factor.name())
        .collect()
}

use Factor::*;

/// Authenticators that 800-63B revision 3 accepts at some level: everything
/// but email, the non-human credentials and federated sign-in.
pub const ACCEPTED: u64 = mask(&[
    Password,
    RecoveryCode,
    Sms,
    Push,
    Totp,
    HardwareOtp,
    Webauthn,
    Passkey,
    SecurityKey,
    Piv,
]);

/// AAL1 (section 4.1.1): any one accepted authenticator.
const AAL1_COMBINATIONS: &[u64] = &[
    mask(&[Password]),
    mask(&[RecoveryCode]),
    mask(&[Sms]),
    mask(&[Push]),
    mask(&[Totp]),
    mask(&[HardwareOtp]),
    mask(&[Webauthn]),
    mask(&[Passkey]),
    mask(&[SecurityKey]),
    mask(&[Piv]),
];

/// AAL2 (section 4.2.1): a multi-factor authenticator alone, or a memorized
/// secret with a look-up secret, out-of-band device, single-factor OTP device
/// or single-factor cryptographic device.
const AAL2_COMBINATIONS: &[u64] = &[
    mask(&[Passkey]),
    mask(&[SecurityKey]),
    mask(&[Piv]),
    mask(&[Password, RecoveryCode]),
    mask(&[Password, Sms]),
    mask(&[Password, Push]),
    mask(&[Password, Totp]),
    mask(&[Password, HardwareOtp]),
    mask(&[Password, Webauthn]),
];

/// AAL3 (section 4.3.1): a multi-factor cryptographic device alone; a
/// single-factor cryptographic device with a memorized secret; a hardware
/// single-factor OTP device with a multi-factor cryptographic software
/// authenticator.
const AAL3_COMBINATIONS: &[u64] = &[
    mask(&[SecurityKey]),
    mask(&[Piv]),
    mask(&[Password, Webauthn]),
    mask(&[HardwareOtp, Passkey]),
];

/// Returns the combinations that reach assurance level `level` (1 to 3).
pub fn combinations(level: u8) -> &'static [u64] {
    match level {
        1 => AAL1_COMBINATIONS,
        2 => AAL2_COMBINATIONS,
        _ => AAL3_COMBINATIONS,
    }
}

/// Every factor that belongs to some combination permitted at `level` or
/// above: the factors a `require aalN` challenge may offer.
pub fn level_factors(level: u8) -> u64 {
    (level.max(1)..=3)
        .flat_map(|l| combinations(l).iter())
        .fold(0, |bits, combination| bits | combination)
}

/// Computes the assurance level (0 to 3) that a set of verified factors reaches.
pub fn assurance_level(verified: u64) -> u8 {
    (1..=3)
        .rev()
        .find(|&level| combinations(level).iter().any(|c| verified & c == *c))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_800_63b_revision_3() {
        assert_eq!(assurance_level(0), 0);
        assert_eq!(assurance_level(mask(&[Email])), 0);
        assert_eq!(assurance_level(mask(&[Password])), 1);
        assert_eq!(assurance_level(mask(&[Totp, Sms])), 1);
        assert_eq!(assurance_level(mask(&[Password, Totp])), 2);
        assert_eq!(assurance_level(mask(&[Passkey])), 2);
        assert_eq!(assurance_level(mask(&[SecurityKey])), 3);
        assert_eq!(assurance_level(mask(&[Password, Webauthn])), 3);
        assert_eq!(assurance_level(mask(&[HardwareOtp, Passkey])), 3);
        assert_eq!(
            assurance_level(mask(&[ClientCert, ApiKey, WorkloadToken, Federated])),
            0
        );
    }

    #[test]
    fn every_higher_level_combination_reaches_lower_levels() {
        for level in 2..=3u8 {
            for combination in combinations(level) {
                assert!(assurance_level(*combination) >= level);
            }
        }
    }

    #[test]
    fn aal3_offers_hardware_paths() {
        let names = names_of(level_factors(3));
        assert_eq!(
            names,
            [
                "password",
                "hardware_otp",
                "webauthn",
                "passkey",
                "security_key",
                "piv"
            ]
        );
    }
}
