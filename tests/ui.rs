//! trybuild: the README's setup code and user-written tiers compile (and
//! run); the mistakes a user is likely to make fail with an error that names
//! the missing trait or field.
#![cfg(all(feature = "redis", feature = "moka", feature = "outbox"))]

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
