//! How long credrot waits for AWS, and saying so: the timeouts of every client, and an
//! interceptor that logs each request (action, HTTP status, duration: `-vv`), names the
//! endpoint that does not answer, and gives up on it after a few unanswered attempts
//! instead of after every retry. It never logs a header or a body: a `CreateAccessKey`
//! answer holds the new secret, and every request a signature.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use std::time::{Duration, Instant};
use tracing::{debug, trace, warn};

/// The environment variable that sets how long one attempt of an AWS call may wait for its
/// answer (a humantime duration: `30s`, `2m`); the connect timeout is capped by it.
pub const TIMEOUT_ENV: &str = "CREDROT_AWS_TIMEOUT";

/// How long one attempt may wait for its answer, unless `CREDROT_AWS_TIMEOUT` says otherwise.
const DEFAULT_ATTEMPT: Duration = Duration::from_secs(30);

/// How long a connection may take to open.
const CONNECT: Duration = Duration::from_secs(5);

/// Attempts in a row that got no answer after which a call gives up, whatever the retry
/// settings allow: an endpoint that accepts and never answers fails a call within about
/// this many attempt timeouts (plus back-off), not after every retry.
const MAX_UNANSWERED: u32 = 3;

/// The timeouts of every AWS client of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// One attempt, from sending the request to the end of the answer.
    pub attempt: Duration,
}

impl Timeouts {
    /// The defaults, with `CREDROT_AWS_TIMEOUT` applied.
    pub fn from_env() -> Timeouts {
        let value = std::env::var(TIMEOUT_ENV).ok();
        Timeouts::from_setting(value.as_deref())
    }

    /// Check `CREDROT_AWS_TIMEOUT` before anything runs: a bad value is a usage error.
    pub fn check_env() -> Result<(), String> {
        match std::env::var(TIMEOUT_ENV) {
            Ok(value) => Self::parse(&value).map(|_| ()),
            Err(_) => Ok(()),
        }
    }

    fn parse(value: &str) -> Result<Duration, String> {
        match humantime::parse_duration(value.trim()) {
            Ok(d) if !d.is_zero() && d <= Duration::from_secs(3600) => Ok(d),
            _ => Err(format!(
                "{TIMEOUT_ENV}={value:?} is not a duration between 1ms and 1h; e.g. {TIMEOUT_ENV}=30s"
            )),
        }
    }

    fn from_setting(value: Option<&str>) -> Timeouts {
        let attempt = match value.map(Self::parse) {
            None => DEFAULT_ATTEMPT,
            Some(Ok(d)) => d,
            Some(Err(message)) => {
                // Unreachable from the binary, which checks the variable at start-up.
                warn!("{message}; using {}s", DEFAULT_ATTEMPT.as_secs());
                DEFAULT_ATTEMPT
            }
        };
        Timeouts {
            connect: CONNECT.min(attempt),
            attempt,
        }
    }
}

/// The endpoint of the operation's current request.
#[derive(Debug, Clone)]
struct Endpoint(String);

impl Storable for Endpoint {
    type Storer = StoreReplace<Self>;
}

/// When the operation's current request was sent.
#[derive(Debug, Clone, Copy)]
struct Sent(Instant);

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

/// Attempts of this operation in a row that got no answer.
#[derive(Debug, Clone, Copy)]
struct Unanswered(u32);

impl Storable for Unanswered {
    type Storer = StoreReplace<Self>;
}

/// The interceptor that logs each request with its outcome and duration (debug), what it
/// waits for (trace), which endpoint did not answer (warn), and stops after
/// [`MAX_UNANSWERED`] unanswered attempts.
#[derive(Debug, Clone)]
pub struct WaitWatch {
    timeouts: Timeouts,
}

impl WaitWatch {
    /// A watch over requests made with `timeouts`.
    pub fn new(timeouts: Timeouts) -> WaitWatch {
        WaitWatch { timeouts }
    }
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map(|m| format!("{}:{}", m.service(), m.name()))
        .unwrap_or_else(|| "an AWS call".to_string())
}

fn endpoint(cfg: &ConfigBag) -> String {
    cfg.load::<Endpoint>()
        .map(|e| e.0.clone())
        .unwrap_or_else(|| "the AWS endpoint".to_string())
}

impl Intercept for WaitWatch {
    fn name(&self) -> &'static str {
        "WaitWatch"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let unanswered = cfg.load::<Unanswered>().map_or(0, |u| u.0);
        if unanswered >= MAX_UNANSWERED {
            return Err(format!(
                "{} did not answer {} in {unanswered} attempts of {}s each; giving up",
                endpoint(cfg),
                operation(cfg),
                self.timeouts.attempt.as_secs_f64()
            )
            .into());
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Without the query: it names the operation, never a credential, but is noise.
        let uri = context.request().uri();
        let uri = uri.split('?').next().unwrap_or(uri).to_string();
        trace!(
            "{}: waiting for {uri} (at most {}s to connect, {}s for the answer)",
            operation(cfg),
            self.timeouts.connect.as_secs_f64(),
            self.timeouts.attempt.as_secs_f64()
        );
        cfg.interceptor_state().store_put(Endpoint(uri));
        cfg.interceptor_state().store_put(Sent(Instant::now()));
        Ok(())
    }

    /// Name the endpoint in an attempt's timeout, which the SDK reports without it, and
    /// count the attempt as unanswered.
    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (endpoint, operation) = (endpoint(cfg), operation(cfg));
        // One line per attempt, sent or not: the status only, never a header or the body.
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let took = cfg
            .load::<Sent>()
            .map(|s| format!(" in {}", millis(s.0.elapsed())))
            .unwrap_or_default();
        let answer = match (context.response(), context.output_or_error()) {
            (Some(response), _) => format!("HTTP {}", response.status().as_u16()),
            (None, Some(Err(e))) if e.is_timeout_error() => "no answer (timeout)".to_string(),
            (None, Some(Err(e))) if e.is_connector_error() => {
                "no answer (connection failed)".to_string()
            }
            (None, _) => "no answer".to_string(),
        };
        debug!("AWS {operation}: {answer}{took} (attempt {attempt}, {endpoint})");
        let Some(result) = context.output_or_error_mut() else {
            return Ok(());
        };
        let replacement = match result {
            Err(e) if e.is_timeout_error() => {
                let why = format!(
                    "no answer from {endpoint} within {}s",
                    self.timeouts.attempt.as_secs_f64()
                );
                Some((OrchestratorError::timeout(why.clone().into()), why))
            }
            Err(e)
                if e.as_connector_error()
                    .is_some_and(ConnectorError::is_timeout) =>
            {
                let why = format!(
                    "could not connect to {endpoint} within {}s",
                    self.timeouts.connect.as_secs_f64()
                );
                Some((
                    OrchestratorError::connector(ConnectorError::timeout(why.clone().into())),
                    why,
                ))
            }
            _ => None,
        };
        match replacement {
            Some((error, why)) => {
                let unanswered = cfg.load::<Unanswered>().map_or(0, |u| u.0) + 1;
                warn!("{operation}: {why} (attempt {unanswered} of at most {MAX_UNANSWERED} without an answer); {TIMEOUT_ENV} sets the wait");
                cfg.interceptor_state().store_put(Unanswered(unanswered));
                *result = Err(error);
            }
            None => {
                cfg.interceptor_state().store_put(Unanswered(0));
            }
        }
        Ok(())
    }
}

/// A duration as milliseconds with one decimal below 10 ms: `3.2 ms`, `148 ms`.
fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_milliseconds() {
        assert_eq!(millis(Duration::from_micros(3_240)), "3.2 ms");
        assert_eq!(millis(Duration::from_micros(148_400)), "148 ms");
        assert_eq!(millis(Duration::from_secs(2)), "2000 ms");
    }

    #[test]
    fn the_attempt_timeout_comes_from_the_environment_and_caps_the_connect_timeout() {
        assert_eq!(
            Timeouts::from_setting(None),
            Timeouts {
                connect: CONNECT,
                attempt: DEFAULT_ATTEMPT
            }
        );
        let short = Timeouts::from_setting(Some("2s"));
        assert_eq!(short.attempt, Duration::from_secs(2));
        assert_eq!(short.connect, Duration::from_secs(2));
        assert_eq!(
            Timeouts::from_setting(Some("2m")).attempt,
            Duration::from_secs(120)
        );
        for bad in ["0s", "soon", "", "2d"] {
            assert_eq!(
                Timeouts::from_setting(Some(bad)).attempt,
                DEFAULT_ATTEMPT,
                "{bad}"
            );
        }
    }
}
