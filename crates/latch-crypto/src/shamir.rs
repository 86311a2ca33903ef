//! Shamir's secret sharing over GF(2^8), byte by byte, in the share format
//! Vault and OpenBao use: each share is the secret's length in y values
//! followed by one byte, the share's x coordinate (never 0: x = 0 is where
//! the secret sits).
//!
//! Threshold `t` of `n`: each secret byte is the constant term of its own
//! random polynomial of degree `t - 1`; any `t` shares recover it by Lagrange
//! interpolation at 0, and fewer reveal nothing about it. Field arithmetic is
//! branch-free bit by bit (no log tables), so its timing does not depend on
//! the secret. Shares carry no checksum: whether a combination is right is
//! learnt from the AES-GCM tag of what the combined key opens.

use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

/// Most shares a secret may be split into (x coordinates are 1..=255).
pub const MAX_SHARES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("threshold must be between 1 and the number of shares ({shares}), not {threshold}")]
    Threshold { shares: usize, threshold: usize },
    #[error("the number of shares must be between 1 and {MAX_SHARES}, not {0}")]
    Shares(usize),
    #[error("the secret to split is empty")]
    EmptySecret,
    #[error("a share must be at least 2 bytes long")]
    ShortShare,
    #[error("shares differ in length: they are not shares of one secret")]
    LengthMismatch,
    #[error("two of the shares are the same share (x = {0})")]
    Duplicate(u8),
    #[error("a share with x = 0 is not a share")]
    ZeroX,
    #[error("random number generator failed")]
    Rng,
}

impl From<CryptoError> for ShamirError {
    fn from(_: CryptoError) -> Self {
        ShamirError::Rng
    }
}

/// Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (AES's field),
/// in constant time.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    for _ in 0..8 {
        r ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    r
}

/// a^254 = a^-1 for a ≠ 0 (and 0 for 0), by square-and-multiply with a fixed
/// sequence of operations.
fn inv(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u8;
    for _ in 0..8 {
        let m = 0u8.wrapping_sub(e & 1);
        let p = mul(result, base);
        result = (p & m) | (result & !m);
        base = mul(base, base);
        e >>= 1;
    }
    result
}

/// Splits `secret` into `shares` shares, any `threshold` of which recover it.
pub fn split(secret: &[u8], shares: usize, threshold: usize) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if shares == 0 || shares > MAX_SHARES {
        return Err(ShamirError::Shares(shares));
    }
    if threshold == 0 || threshold > shares {
        return Err(ShamirError::Threshold { shares, threshold });
    }
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }
    let xs = distinct_xs(shares)?;
    let mut out: Vec<Zeroizing<Vec<u8>>> = xs
        .iter()
        .map(|&x| {
            let mut s = Zeroizing::new(vec![0u8; secret.len() + 1]);
            s[secret.len()] = x;
            s
        })
        .collect();
    for (i, &byte) in secret.iter().enumerate() {
        // coefficients[0] is the secret byte; the rest are random.
        let mut coefficients = Zeroizing::new(random_bytes(threshold)?);
        coefficients[0] = byte;
        for (share, &x) in out.iter_mut().zip(&xs) {
            share[i] = eval(&coefficients, x);
        }
    }
    Ok(out)
}

/// Horner's rule.
fn eval(coefficients: &[u8], x: u8) -> u8 {
    coefficients.iter().rev().fold(0u8, |acc, &c| mul(acc, x) ^ c)
}

/// `n` distinct non-zero x coordinates in random order.
fn distinct_xs(n: usize) -> Result<Vec<u8>, ShamirError> {
    let mut all: Vec<u8> = (1..=255u8).collect();
    // Fisher–Yates with rejection sampling, so the order is uniform.
    for i in (1..all.len()).rev() {
        let bound = (i + 1) as u16;
        let j = loop {
            let b = random_bytes(2)?;
            let v = u16::from_le_bytes([b[0], b[1]]);
            let limit = u16::MAX - (u16::MAX % bound);
            if v < limit {
                break (v % bound) as usize;
            }
        };
        all.swap(i, j);
    }
    all.truncate(n);
    Ok(all)
}

/// Recovers the secret from shares. Any `threshold` distinct shares give the
/// secret; fewer (or shares of another secret) give unrelated bytes, which
/// the caller detects by what the result fails to open.
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    let first = shares.first().ok_or(ShamirError::ShortShare)?;
    if first.len() < 2 {
        return Err(ShamirError::ShortShare);
    }
    let len = first.len() - 1;
    let mut xs = Vec::with_capacity(shares.len());
    for s in shares {
        if s.len() != first.len() {
            return Err(ShamirError::LengthMismatch);
        }
        let x = s[len];
        if x == 0 {
            return Err(ShamirError::ZeroX);
        }
        if xs.contains(&x) {
            return Err(ShamirError::Duplicate(x));
        }
        xs.push(x);
    }
    // Lagrange basis at 0: l_j(0) = prod_{m != j} x_m / (x_m - x_j); in GF(2^8) minus is xor.
    let basis: Vec<u8> = (0..xs.len())
        .map(|j| {
            xs.iter().enumerate().filter(|&(m, _)| m != j).fold(1u8, |acc, (_, &xm)| mul(acc, mul(xm, inv(xm ^ xs[j]))))
        })
        .collect();
    let mut secret = Zeroizing::new(vec![0u8; len]);
    for (i, out) in secret.iter_mut().enumerate() {
        *out = shares.iter().zip(&basis).fold(0u8, |acc, (s, &l)| acc ^ mul(s[i], l));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_inverse_is_an_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "a = {a}");
        }
        assert_eq!(mul(0x57, 0x83), 0xc1, "FIPS-197's worked example");
    }

    #[test]
    fn any_threshold_subset_recovers_the_secret() {
        let secret = random_bytes(32).unwrap();
        let shares = split(&secret, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a == b || b == c || a == c {
                        continue;
                    }
                    let got = combine(&[&shares[a], &shares[b], &shares[c]]).unwrap();
                    assert_eq!(*got, secret);
                }
            }
        }
        let all: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        assert_eq!(*combine(&all).unwrap(), secret, "more than the threshold works too");
    }

    #[test]
    fn fewer_than_the_threshold_do_not_recover_it() {
        let secret = [7u8; 32];
        let shares = split(&secret, 5, 3).unwrap();
        let got = combine(&[&shares[0], &shares[1]]).unwrap();
        assert_ne!(*got, secret.to_vec());
    }

    #[test]
    fn one_of_one_is_the_secret_itself() {
        let shares = split(b"abc", 1, 1).unwrap();
        assert_eq!(&shares[0][..3], b"abc");
        assert_eq!(*combine(&[&shares[0]]).unwrap(), b"abc".to_vec());
    }

    #[test]
    fn bad_parameters_and_shares_are_refused() {
        assert_eq!(split(b"k", 0, 0), Err(ShamirError::Shares(0)));
        assert_eq!(split(b"k", 256, 2), Err(ShamirError::Shares(256)));
        assert_eq!(split(b"k", 3, 4), Err(ShamirError::Threshold { shares: 3, threshold: 4 }));
        assert_eq!(split(b"k", 3, 0), Err(ShamirError::Threshold { shares: 3, threshold: 0 }));
        assert_eq!(split(b"", 3, 2), Err(ShamirError::EmptySecret));
        let s = split(b"key", 3, 2).unwrap();
        assert_eq!(combine(&[&s[0], &s[0]]), Err(ShamirError::Duplicate(s[0][3])));
        assert_eq!(combine(&[&s[0], &s[1][..3]]), Err(ShamirError::LengthMismatch));
        assert_eq!(combine(&[b"a"]), Err(ShamirError::ShortShare));
        assert_eq!(combine(&[]), Err(ShamirError::ShortShare));
        assert_eq!(combine(&[&[1, 0]]), Err(ShamirError::ZeroX));
    }

    #[test]
    fn x_coordinates_are_distinct_and_nonzero() {
        for _ in 0..20 {
            let s = split(b"k", 255, 2).unwrap();
            let mut xs: Vec<u8> = s.iter().map(|s| s[1]).collect();
            xs.sort_unstable();
            xs.dedup();
            assert_eq!(xs.len(), 255);
            assert!(!xs.contains(&0));
        }
    }
}
