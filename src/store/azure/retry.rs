//! Backing off from Key Vault: exponential delays, and the server's `Retry-After` honoured
//! up to a cap, so that a throttled vault slows the job down instead of failing it, and a
//! vault asking for an hour's pause cannot hang it.

use std::sync::Arc;

use azure_core::http::headers::{HeaderName, RETRY_AFTER};
use azure_core::http::policies::{RetryHeaders, RetryPolicy};
use azure_core::http::{RetryOptions, StatusCode};
use azure_core::time::Duration;

/// Retries after the first attempt.
const MAX_RETRIES: u32 = 6;
/// The first delay; each retry doubles it.
const INITIAL_DELAY_MS: i64 = 500;
/// The longest single wait, whatever `Retry-After` says.
const MAX_DELAY_SECONDS: i64 = 20;
/// The longest time spent retrying one request.
const MAX_TOTAL_SECONDS: i64 = 120;

#[derive(Debug)]
struct CappedBackoff {
    headers: RetryHeaders,
}

#[async_trait::async_trait]
impl RetryPolicy for CappedBackoff {
    fn is_expired(&self, duration_since_start: Duration, retry_count: u32) -> bool {
        retry_count >= MAX_RETRIES || duration_since_start >= Duration::seconds(MAX_TOTAL_SECONDS)
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // The default set: 408, 429, 500, 502, 503, 504.
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> Duration {
        let factor = 1i64 << retry_count.saturating_sub(1).min(10);
        Duration::milliseconds(INITIAL_DELAY_MS * factor).min(Duration::seconds(MAX_DELAY_SECONDS))
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<Duration>) {
        let backoff = self.sleep_duration(retry_count);
        let delay = retry_after
            .map_or(backoff, |asked| asked.max(backoff))
            .min(Duration::seconds(MAX_DELAY_SECONDS));
        let delay = std::time::Duration::try_from(delay).unwrap_or_default();
        tokio::time::sleep(delay).await;
    }
}

/// The retry options for the Key Vault client.
pub(super) fn options() -> RetryOptions {
    RetryOptions::custom(Arc::new(CappedBackoff {
        headers: RetryHeaders {
            retry_headers: vec![
                HeaderName::from_static("retry-after-ms"),
                HeaderName::from_static("x-ms-retry-after-ms"),
                RETRY_AFTER,
            ],
        },
    }))
}
