//! What the protocol tests against real servers share.

/// A server (or its OS user) these tests need is missing. In CI (`CI=true`) that is a
/// failure: a suite that skips itself there would pass without testing anything. Elsewhere the
/// test skips with a message.
pub(crate) fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}, and CI=true: this test must run here (scripts/test.sh installs it)");
    }
    eprintln!("skipping: {what}");
}
