//! Backing off from Key Vault: exponential delays, and the server's `Retry-After` honoured
//! up to a cap, so that a throttled vault slows the job down instead of failing it, and a
//! vault asking for an hour's pause cannot hang it.

use std::sync::Arc;

use azure_core::http::headers::{HeaderName, RETRY_AFTER};
use azure_core::http::policies::{RetryHeaders, RetryPolicy};
use azure_core::http::{RetryOptions, StatusCode};
use azure_core::time::Duration;

/// How long kvseal keeps retrying one Key Vault request.
#[derive(Clone, Copy, Debug)]
pub struct RetryLimits {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first delay; each retry doubles it.
    pub initial_delay: std::time::Duration,
    /// The longest single wait, whatever `Retry-After` asks for.
    pub max_delay: std::time::Duration,
    /// The longest time spent retrying one request.
    pub max_total: std::time::Duration,
}

impl Default for RetryLimits {
    fn default() -> Self {
        Self {
            max_retries: 6,
            initial_delay: std::time::Duration::from_millis(500),
            max_delay: std::time::Duration::from_secs(20),
            max_total: std::time::Duration::from_secs(120),
        }
    }
}

#[derive(Debug)]
struct CappedBackoff {
    headers: RetryHeaders,
    limits: RetryLimits,
}

fn duration(d: std::time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::MAX)
}

#[async_trait::async_trait]
impl RetryPolicy for CappedBackoff {
    fn is_expired(&self, duration_since_start: Duration, retry_count: u32) -> bool {
        retry_count >= self.limits.max_retries
            || duration_since_start >= duration(self.limits.max_total)
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // The default set: 408, 429, 500, 502, 503, 504.
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> Duration {
        let factor = 1u32 << retry_count.saturating_sub(1).min(10);
        duration(
            self.limits
                .initial_delay
                .saturating_mul(factor)
                .min(self.limits.max_delay),
        )
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<Duration>) {
        let backoff = self.sleep_duration(retry_count);
        let delay = retry_after
            .map_or(backoff, |asked| asked.max(backoff))
            .min(duration(self.limits.max_delay));
        let delay = std::time::Duration::try_from(delay).unwrap_or_default();
        tokio::time::sleep(delay).await;
    }
}

/// The retry options for the Key Vault client.
pub(super) fn options(limits: RetryLimits) -> RetryOptions {
    RetryOptions::custom(Arc::new(CappedBackoff {
        headers: RetryHeaders {
            retry_headers: vec![
                HeaderName::from_static("retry-after-ms"),
                HeaderName::from_static("x-ms-retry-after-ms"),
                RETRY_AFTER,
            ],
        },
        limits,
    }))
}
