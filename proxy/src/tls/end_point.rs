//! RFC 5929 tls-server-end-point, the channel binding SCRAM-SHA-256-PLUS uses: the hash of the
//! server's certificate, with the hash of the certificate's own signature algorithm (SHA-256
//! for MD5 and SHA-1). Found by reading just enough DER to reach that algorithm's OID.

use ring::digest;

/// The binding data for `cert` (DER), or `None` when its signature algorithm names no hash
/// this knows (RSASSA-PSS, Ed25519): SCRAM-SHA-256-PLUS is then not offered, as PostgreSQL
/// does.
pub(super) fn hash(cert: &[u8]) -> Option<Vec<u8>> {
    let algorithm = match signature_oid(cert)? {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption
        [
            0x2a,
            0x86,
            0x48,
            0x86,
            0xf7,
            0x0d,
            0x01,
            0x01,
            0x04 | 0x05 | 0x0b,
        ] => &digest::SHA256,
        // sha384WithRSAEncryption, sha512WithRSAEncryption
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c] => &digest::SHA384,
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d] => &digest::SHA512,
        // ecdsa-with-SHA1, ecdsa-with-SHA256
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => &digest::SHA256,
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02] => &digest::SHA256,
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03] => &digest::SHA384,
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04] => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(algorithm, cert).as_ref().to_vec())
}

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, ... };
/// AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }.
fn signature_oid(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = tlv(cert, 0x30)?;
    let (_tbs, rest) = tlv(certificate, 0x30)?;
    let (algorithm, _) = tlv(rest, 0x30)?;
    let (oid, _) = tlv(algorithm, 0x06)?;
    Some(oid)
}

/// The contents of the DER element at the start of `b` if its tag is `tag`, and what follows.
fn tlv(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    let first = *b.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((b.get(header..end)?, b.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecdsa_p256_certificate_binds_with_sha256() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = made.cert.der();
        let h = hash(der).expect("a hash");
        assert_eq!(h, digest::digest(&digest::SHA256, der).as_ref());
    }

    #[test]
    fn anything_else_binds_with_nothing() {
        assert_eq!(hash(b""), None);
        assert_eq!(hash(&[0x30, 0x03, 0x30, 0x01]), None);
        assert_eq!(hash(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
