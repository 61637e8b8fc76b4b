//! SCRAM-SHA-256: the server side fed arbitrary client-first and client-final messages, the
//! client side fed arbitrary server-first and server-final messages, PostgreSQL's stored
//! verifier form, and a whole exchange between the two sides for an arbitrary password.
//!
//! Input: one mode byte, then two messages separated by the first NUL. In the messages, `@@`
//! stands for the nonce the other side chose (the random part can't come from the fuzzer).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use protocols::auth::scram::{ScramClient, ScramError, ScramSecret, ScramServer, salted_password};

/// One PBKDF2 round: the exchange is what is under test, not the key stretching.
static SECRET: LazyLock<ScramSecret> =
    LazyLock::new(|| ScramSecret::from_password("pencil", b"salt", 1));

fuzz_target!(|data: &[u8]| torpor_fuzz::timed(data, run));

fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (first, last) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    match mode % 4 {
        0 => server(first, last),
        1 => client(first, last),
        2 => exchange(rest),
        _ => verifier(rest),
    }
}

fn server(client_first: &[u8], client_final: &[u8]) {
    let Ok((state, server_first)) = ScramServer::start(SECRET.clone(), client_first) else {
        return;
    };
    let server_first = String::from_utf8(server_first).unwrap_or_default();
    let nonce = server_first
        .strip_prefix("r=")
        .and_then(|s| s.split(',').next())
        .unwrap_or_default();
    let _ = state.finish(&with_nonce(client_final, nonce));
}

fn client(server_first: &[u8], server_final: &[u8]) {
    let (mut state, client_first) = ScramClient::new("pencil");
    let client_first = String::from_utf8(client_first).unwrap_or_default();
    let nonce = client_first.rsplit("r=").next().unwrap_or_default();
    let server_first = with_nonce(server_first, nonce);
    // The iteration count comes from the server (up to MAX_ITERATIONS): stretch once instead.
    let cheap = |password: &[u8], salt: &[u8], _| salted_password(password, salt, 1);
    if state.handle_server_first_with(&server_first, cheap).is_ok() {
        let _ = state.verify_server_final(server_final);
    }
}

/// Torpor's client against torpor's server: the right password passes both checks, a wrong
/// one is refused by the server.
fn exchange(password: &[u8]) {
    let password = String::from_utf8_lossy(password);
    let secret = ScramSecret::from_password(&password, b"fuzz salt", 1);
    for (attempt, expected) in [
        (password.to_string(), true),
        (format!("{password}x"), false),
    ] {
        let (mut client, client_first) = ScramClient::new(&attempt);
        let (server, server_first) = ScramServer::start(secret.clone(), &client_first)
            .unwrap_or_else(|e| panic!("client-first refused: {e}"));
        let client_final = client
            .handle_server_first(&server_first)
            .unwrap_or_else(|e| panic!("server-first refused: {e}"));
        match server.finish(&client_final) {
            Ok(server_final) => {
                assert!(expected, "a wrong password verified");
                client
                    .verify_server_final(&server_final)
                    .unwrap_or_else(|e| panic!("server-final refused: {e}"));
            }
            Err(e) => assert!(!expected && e == ScramError::BadProof, "{e}"),
        }
    }
}

/// A stored verifier that parses prints back to a form that parses to the same verifier.
fn verifier(text: &[u8]) {
    let Ok(secret) = ScramSecret::from_pg_verifier(&String::from_utf8_lossy(text)) else {
        return;
    };
    let printed = secret.to_pg_verifier();
    let again = ScramSecret::from_pg_verifier(&printed).map(|s| s.to_pg_verifier());
    assert_eq!(again.as_deref(), Ok(printed.as_str()));
}

fn with_nonce(message: &[u8], nonce: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + nonce.len());
    let mut rest = message;
    while let Some(i) = rest.windows(2).position(|w| w == b"@@") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(nonce.as_bytes());
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}
