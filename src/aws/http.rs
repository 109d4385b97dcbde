//! The one HTTP client every AWS SDK client and credential provider uses.
//!
//! The SDK crates are built without their default HTTPS client (which would compile
//! aws-lc-sys, and with older feature sets a second, legacy TLS stack). This is the SDK's own
//! hyper 1 client on rustls with ring, the stack the webhook client uses too.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::sync::OnceLock;

/// The shared HTTPS client (plain http too: emulators and VPC endpoints on http work). One
/// per process so its connection pool is shared by every client made from it.
pub fn http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https()
        })
        .clone()
}
