use super::*;
use rand::{Rng, SeedableRng};

// RFC 7677 section 3.
const C_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const S_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_secret() -> ScramSecret {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    ScramSecret::from_password("pencil", &salt, 4096)
}

#[test]
fn rfc7677_client() {
    let (mut c, first) = ScramClient::with_nonce("user", "pencil", C_NONCE);
    assert_eq!(first, CLIENT_FIRST.as_bytes());
    let fin = c.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(fin).unwrap(), CLIENT_FINAL);
    c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    assert_eq!(
        c.verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Err(ScramError::ServerSignature)
    );
    assert_eq!(
        c.verify_server_final(b"e=invalid-proof"),
        Err(ScramError::ServerError("invalid-proof".into()))
    );
}

#[test]
fn a_remembered_salted_password_gives_the_same_proof() {
    let salted = salted_password(
        b"pencil",
        &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
        4096,
    );
    let (mut c, _) = ScramClient::with_nonce("user", "pencil", C_NONCE);
    let mut asked = None;
    let fin = c
        .handle_server_first_with(SERVER_FIRST.as_bytes(), |pw, salt, i| {
            asked = Some((pw.to_vec(), salt.to_vec(), i));
            salted
        })
        .unwrap();
    assert_eq!(String::from_utf8(fin).unwrap(), CLIENT_FINAL);
    assert_eq!(asked.map(|a| a.2), Some(4096));
    c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn rfc7677_server() {
    let (s, first) = ScramServer::start_with_nonce(
        rfc_secret(),
        CLIENT_FIRST.as_bytes(),
        Binding::default(),
        S_NONCE,
    )
    .unwrap();
    assert_eq!(first, SERVER_FIRST.as_bytes());
    let fin = s.finish(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(fin, SERVER_FINAL.as_bytes());
}

#[test]
fn pg_verifier_roundtrip() {
    let s = rfc_secret();
    let text = s.to_pg_verifier();
    assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    let back = ScramSecret::from_pg_verifier(&text).unwrap();
    assert_eq!(back.stored_key, s.stored_key);
    assert_eq!(back.server_key, s.server_key);
    assert!(ScramSecret::from_pg_verifier("md5abc").is_err());
    assert!(ScramSecret::from_pg_verifier("SCRAM-SHA-256$0:AA==$AA==:AA==").is_err());
    assert!(ScramSecret::from_pg_verifier("SCRAM-SHA-256$4096:AA==$AA==:AA==").is_err());
}

/// Runs a whole exchange; the final result is the server's verdict after the client checked
/// the server's signature.
fn exchange(secret: ScramSecret, password: &str) -> Result<(), ScramError> {
    let (mut c, first) = ScramClient::new(password);
    let (s, server_first) = ScramServer::start(secret, &first)?;
    let fin = c.handle_server_first(&server_first)?;
    let server_final = s.finish(&fin)?;
    c.verify_server_final(&server_final)
}

#[test]
fn full_exchange() {
    exchange(ScramSecret::random_for("s3cret"), "s3cret").unwrap();
    exchange(ScramSecret::from_password("", b"salt", 1), "").unwrap();
}

#[test]
fn wrong_password_is_bad_proof() {
    assert_eq!(
        exchange(ScramSecret::random_for("s3cret"), "s3creT"),
        Err(ScramError::BadProof)
    );
}

#[test]
fn unknown_user_always_fails() {
    for _ in 0..3 {
        assert_eq!(
            exchange(ScramSecret::unknown_user(), ""),
            Err(ScramError::BadProof)
        );
        assert_eq!(
            exchange(ScramSecret::unknown_user_named("ghost"), "x"),
            Err(ScramError::BadProof)
        );
    }
    // even a client that somehow produced the right proof for the random keys fails
    let mut doomed = rfc_secret();
    doomed.doomed = true;
    let (s, _) =
        ScramServer::start_with_nonce(doomed, CLIENT_FIRST.as_bytes(), Binding::default(), S_NONCE)
            .unwrap();
    assert_eq!(s.finish(CLIENT_FINAL.as_bytes()), Err(ScramError::BadProof));
    // a stable salt per name, different across names
    let salt_of = |s: &ScramSecret| s.salt.clone();
    assert_eq!(
        salt_of(&ScramSecret::unknown_user_named("a")),
        salt_of(&ScramSecret::unknown_user_named("a"))
    );
    assert_ne!(
        salt_of(&ScramSecret::unknown_user_named("a")),
        salt_of(&ScramSecret::unknown_user_named("b"))
    );
}

#[test]
fn gs2_headers() {
    let secret = || ScramSecret::from_password("pw", b"salt", 2);
    // "y,," is accepted and must then be echoed as c=eSws
    let (s, sf) = ScramServer::start(secret(), b"y,,n=,r=abc").unwrap();
    let nonce = std::str::from_utf8(&sf).unwrap().split(',').next().unwrap()[2..].to_owned();
    assert!(matches!(
        s.finish(format!("c=biws,r={nonce},p=AAAA").as_bytes()),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        ScramServer::start(secret(), b"p=tls-server-end-point,,n=,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        ScramServer::start(secret(), b"n,a=admin,n=,r=abc"),
        Err(ScramError::Unsupported(_))
    ));
    assert!(matches!(
        ScramServer::start(secret(), b"n,,m=ext,n=,r=abc"),
        Err(ScramError::Unsupported(_))
    ));
}

#[test]
fn malformed_server_inputs() {
    let secret = || ScramSecret::from_password("pw", b"salt", 2);
    for bad in [
        &b""[..],
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=,r=abc",
        b"n,,r=abc",
        b"n,,n=",
        b"n,,n=,r=",
        b"n,,n=,r=a,b",
        b"n,,n=,x=abc",
        b"n,,n=,r=\xff",
        b"n,,n=,r=a b",
    ] {
        assert!(
            matches!(
                ScramServer::start(secret(), bad),
                Err(ScramError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
    let start = || {
        ScramServer::start_with_nonce(secret(), b"n,,n=,r=abc", Binding::default(), "xyz").unwrap()
    };
    for bad in [
        "",
        "c=biws,r=abcxyz",
        "c=biws,r=abcxyz,p=",
        "c=biws,r=abcxyz,p=!!!",
        "c=biws,r=abcxyz,p=AAAA",
        "c=biws,r=abc,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "c=!!,r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "c=eSws,r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        assert!(
            matches!(
                start().0.finish(bad.as_bytes()),
                Err(ScramError::Malformed(_))
            ),
            "{bad}"
        );
    }
    // well-formed but wrong proof
    assert_eq!(
        start()
            .0
            .finish(b"c=biws,r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Err(ScramError::BadProof)
    );
}

#[test]
fn malformed_client_inputs() {
    for bad in [
        "",
        "r=other,s=AAAA,i=1",
        "r=NONCE,s=AAAA,i=1", // not longer than the client nonce
        "r=NONCEx,s=!!,i=1",
        "r=NONCEx,s=,i=1",
        "r=NONCEx,s=AAAA,i=0",
        "r=NONCEx,s=AAAA,i=-1",
        "r=NONCEx,s=AAAA,i=10000001",
        "r=NONCEx,s=AAAA,i=99999999999999",
        "r=NONCEx,s=AAAA",
        "s=AAAA,r=NONCEx,i=1",
    ] {
        let (mut c, _) = ScramClient::with_nonce("", "pw", "NONCE");
        assert!(
            matches!(
                c.handle_server_first(bad.as_bytes()),
                Err(ScramError::Malformed(_))
            ),
            "{bad}"
        );
    }
    let (mut c, _) = ScramClient::with_nonce("", "pw", "NONCE");
    assert!(matches!(
        c.handle_server_first(b"m=x,r=NONCEx,s=AAAA,i=1"),
        Err(ScramError::Unsupported(_))
    ));
    assert!(matches!(
        c.verify_server_final(b"v=AAAA"),
        Err(ScramError::Malformed(_))
    ));
    c.handle_server_first(b"r=NONCEx,s=AAAA,i=1").unwrap();
    for bad in [&b""[..], b"v=", b"v=!!", b"x=1", b"\xff"] {
        assert!(c.verify_server_final(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn user_name_is_escaped() {
    let (_, first) = ScramClient::with_nonce("a,b=c", "pw", "N");
    assert_eq!(first, b"n,,n=a=2Cb=3Dc,r=N");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let prefixes: [&[u8]; 4] = [b"", b"n,,n=,r=", b"c=biws,r=", b"r=N"];
    for i in 0..20_000 {
        let len = rng.random_range(0..48);
        let mut input: Vec<u8> = prefixes[i % prefixes.len()].to_vec();
        input.extend((0..len).map(|_| rng.random::<u8>()));
        let secret = ScramSecret::from_password("pw", b"salt", 1);
        if let Ok((s, _)) = ScramServer::start(secret.clone(), &input) {
            let _ = s.finish(&input);
        }
        let (_, first) = ScramClient::with_nonce("", "pw", "N");
        let (s, _) = ScramServer::start(secret, &first).unwrap();
        let _ = s.finish(&input);
        let (mut c, _) = ScramClient::with_nonce("", "pw", "N");
        let _ = c.handle_server_first(&input);
        let _ = c.verify_server_final(&input);
    }
}

/// The client's half of a SCRAM-SHA-256-PLUS exchange, computed here from the password.
fn bound_final(
    password: &str,
    server_first: &str,
    gs2: &str,
    data: &[u8],
    client_first_bare: &str,
) -> String {
    let nonce = server_first.split(',').next().unwrap()[2..].to_owned();
    let salt = B64
        .decode(
            server_first
                .split(",s=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap(),
        )
        .unwrap();
    let salted = salted_password(password.as_bytes(), &salt, 2);
    let client_key = keys::hmac(&salted, &[b"Client Key"]);
    let stored = keys::sha256(&client_key);
    let mut cbind = gs2.as_bytes().to_vec();
    cbind.extend_from_slice(data);
    let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
    let auth = [
        client_first_bare.as_bytes(),
        b",",
        server_first.as_bytes(),
        b",",
        without_proof.as_bytes(),
    ];
    let signature = keys::hmac(&stored, &auth);
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[test]
fn channel_binding_checks_the_certificate_hash() {
    let secret = || ScramSecret::from_password("pw", b"salt", 2);
    let hash = [7u8; 32];
    let plus = Binding {
        offered: Some(&hash),
        chosen: true,
    };
    let first = "p=tls-server-end-point,,n=,r=abc";
    let (s, sf) = ScramServer::start_bound(secret(), first.as_bytes(), plus).unwrap();
    let sf = String::from_utf8(sf).unwrap();
    let good = bound_final("pw", &sf, "p=tls-server-end-point,,", &hash, "n=,r=abc");
    assert!(s.finish(good.as_bytes()).is_ok());
    // Bound to another certificate: someone in the middle.
    let (s, sf) = ScramServer::start_bound(secret(), first.as_bytes(), plus).unwrap();
    let sf = String::from_utf8(sf).unwrap();
    let other = bound_final(
        "pw",
        &sf,
        "p=tls-server-end-point,,",
        &[8u8; 32],
        "n=,r=abc",
    );
    assert!(matches!(
        s.finish(other.as_bytes()),
        Err(ScramError::Malformed(_))
    ));

    // Offered but not taken: "n" is fine, "y" is a downgrade.
    let offered = Binding {
        offered: Some(&hash),
        chosen: false,
    };
    assert!(ScramServer::start_bound(secret(), b"n,,n=,r=abc", offered).is_ok());
    assert!(matches!(
        ScramServer::start_bound(secret(), b"y,,n=,r=abc", offered),
        Err(ScramError::Downgrade)
    ));
    // PLUS chosen without binding, or with another type.
    assert!(ScramServer::start_bound(secret(), b"n,,n=,r=abc", plus).is_err());
    assert!(matches!(
        ScramServer::start_bound(secret(), b"p=tls-unique,,n=,r=abc", plus),
        Err(ScramError::Unsupported(_))
    ));
}

/// A client verified against a stored verifier gives up its ClientKey; with it torpor logs in
/// to a server holding the same verifier, and to no other.
#[test]
fn the_client_key_logs_in_where_the_same_verifier_is() {
    let stored = ScramSecret::from_password("pw", b"salt-one", 4096);
    let verifier = ScramSecret::from_pg_verifier(&stored.to_pg_verifier()).unwrap();
    // The client logs in to torpor.
    let (mut client, first) = ScramClient::new("pw");
    let (server, server_first) = ScramServer::start(verifier.clone(), &first).unwrap();
    let client_final = client.handle_server_first(&server_first).unwrap();
    let (server_final, keys) = server.finish_keyed(&client_final).unwrap();
    client.verify_server_final(&server_final).unwrap();
    // torpor logs in to a backend with the same verifier, with the keys alone.
    let login = |backend: ScramSecret| {
        let (mut c, first) = ScramClient::with_keys(keys.clone());
        let (s, sf) = ScramServer::start(backend, &first).unwrap();
        let fin = c.handle_server_first(&sf)?;
        let sfin = s.finish(&fin)?;
        c.verify_server_final(&sfin)
    };
    assert!(login(verifier).is_ok());
    // Another salt: refused before any proof is sent.
    let other = ScramSecret::from_password("pw", b"salt-two", 4096);
    assert!(matches!(login(other), Err(ScramError::Unsupported(_))));
    assert_eq!(format!("{keys:?}"), "ScramKeys(<redacted>)");
}
