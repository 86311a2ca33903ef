//! OpenSSH Key Revocation Lists (PROTOCOL.krl), written by serial number.
//!
//! `sshd` re-reads its `RevokedKeys` file on every authentication, so a
//! rewritten file revokes at once. Only the sections latch needs are
//! written: one certificate section for latch's CA with a serial list.

use russh::keys::ssh_key::PublicKey;

const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SECTION_SERIAL_LIST: u8 = 0x20;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// An SSH `string`: u32 length, then the bytes. Lengths here are far below 4 GiB.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(s);
}

/// A KRL revoking the certificates of `ca` with the given serials. `version`
/// must grow with every change (sshd does not care; humans and caches do).
pub fn encode_krl(ca: &PublicKey, serials: &[u64], version: u64, generated_unix: u64, comment: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + serials.len() * 8);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_u64(&mut out, version);
    put_u64(&mut out, generated_unix);
    put_u64(&mut out, 0); // flags
    put_string(&mut out, b""); // reserved
    put_string(&mut out, comment.as_bytes());
    let mut serials: Vec<u64> = serials.iter().copied().filter(|s| *s != 0).collect();
    serials.sort_unstable();
    serials.dedup();
    if !serials.is_empty() {
        let mut list = Vec::with_capacity(serials.len() * 8);
        for s in &serials {
            put_u64(&mut list, *s);
        }
        let mut section = Vec::new();
        put_string(&mut section, &ca.to_bytes().unwrap_or_default());
        put_string(&mut section, b""); // reserved
        section.push(CERT_SECTION_SERIAL_LIST);
        put_string(&mut section, &list);
        out.push(SECTION_CERTIFICATES);
        put_string(&mut out, &section);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserCa;

    #[test]
    fn layout_follows_protocol_krl() {
        let ca = UserCa::from_seed(&[2; 32]);
        let empty = encode_krl(ca.public_key(), &[], 1, 1_700_000_000, "latch");
        assert_eq!(&empty[..8], b"SSHKRL\n\0");
        assert_eq!(&empty[8..12], &1u32.to_be_bytes());
        assert_eq!(empty.len(), 8 + 4 + 8 + 8 + 8 + 4 + 4 + 5, "header only");
        let k = encode_krl(ca.public_key(), &[9, 3, 3, 0], 2, 1_700_000_000, "latch");
        let body = &k[empty.len()..];
        assert_eq!(body[0], SECTION_CERTIFICATES);
        // The serial list is sorted, de-duplicated and never holds 0.
        assert!(k.ends_with(&[&3u64.to_be_bytes()[..], &9u64.to_be_bytes()[..]].concat()));
        let list_len = u32::from_be_bytes(k[k.len() - 20..k.len() - 16].try_into().unwrap());
        assert_eq!(list_len, 16);
    }
}
