//! The query parameters of the Event Grid API, checked against Event Grid's ranges before the
//! store is called. Parameter names match in any case, as Azure's do; the first occurrence of
//! a parameter counts; unknown parameters are ignored.

use super::error::{API_VERSIONS, ApiError};
use std::time::Duration;

/// `maxEvents`: 1-100, default 1.
pub const MAX_EVENTS: std::ops::RangeInclusive<u32> = 1..=100;
/// `maxWaitTime` in seconds: 10-120, default 60.
pub const MAX_WAIT_SECONDS: std::ops::RangeInclusive<u32> = 10..=120;
/// The release delays Event Grid offers, in seconds.
pub const RELEASE_DELAYS: [u32; 5] = [0, 10, 60, 600, 3600];

/// The decoded query string of one request.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Self { pairs }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `api-version`: required, one of [`API_VERSIONS`].
    pub fn api_version(&self) -> Result<&'static str, ApiError> {
        let sent = self.get("api-version");
        API_VERSIONS
            .into_iter()
            .find(|version| Some(*version) == sent)
            .ok_or_else(|| ApiError::api_version(sent))
    }

    /// `maxEvents` of a receive.
    pub fn max_events(&self) -> Result<usize, ApiError> {
        let count = self.integer("maxEvents", MAX_EVENTS, 1)?;
        Ok(usize::try_from(count).unwrap_or(1))
    }

    /// `maxWaitTime` of a receive.
    pub fn max_wait(&self) -> Result<Duration, ApiError> {
        let seconds = self.integer("maxWaitTime", MAX_WAIT_SECONDS, 60)?;
        Ok(Duration::from_secs(u64::from(seconds)))
    }

    /// `releaseDelayInSeconds` of a release (default 0).
    pub fn release_delay(&self) -> Result<Duration, ApiError> {
        let Some(sent) = self.get("releaseDelayInSeconds") else {
            return Ok(Duration::ZERO);
        };
        let allowed = || {
            RELEASE_DELAYS
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match sent.trim().parse::<u32>() {
            Ok(seconds) if RELEASE_DELAYS.contains(&seconds) => {
                Ok(Duration::from_secs(u64::from(seconds)))
            }
            _ => Err(ApiError::bad_request(format!(
                "releaseDelayInSeconds must be one of {}; got '{sent}'",
                allowed()
            ))),
        }
    }

    fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u32>,
        default: u32,
    ) -> Result<u32, ApiError> {
        let Some(sent) = self.get(name) else {
            return Ok(default);
        };
        match sent.trim().parse::<u32>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(ApiError::bad_request(format!(
                "{name} must be an integer from {} to {}; got '{sent}'",
                range.start(),
                range.end()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Query {
        Query::parse(Some(text))
    }

    fn message(error: ApiError) -> String {
        error.message
    }

    #[test]
    fn both_api_versions_are_served() {
        for version in API_VERSIONS {
            assert_eq!(
                query(&format!("api-version={version}")).api_version(),
                Ok(version)
            );
        }
        assert_eq!(
            query("API-VERSION=2024-06-01").api_version(),
            Ok("2024-06-01")
        );
    }

    #[test]
    fn another_or_no_api_version_is_refused() {
        assert_eq!(
            message(query("api-version=2018-01-01").api_version().unwrap_err()),
            "api-version '2018-01-01' is not supported; supported versions: 2023-11-01, 2024-06-01"
        );
        assert_eq!(
            message(Query::parse(None).api_version().unwrap_err()),
            "the api-version query parameter is required; supported versions: 2023-11-01, 2024-06-01"
        );
    }

    #[test]
    fn receive_parameters_default_to_event_grids() {
        let query = query("api-version=2024-06-01");
        assert_eq!(query.max_events(), Ok(1));
        assert_eq!(query.max_wait(), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn receive_parameters_are_taken_within_range() {
        let query = query("maxEvents=100&maxWaitTime=10");
        assert_eq!(query.max_events(), Ok(100));
        assert_eq!(query.max_wait(), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn receive_parameters_out_of_range_are_refused() {
        for (text, expected) in [
            (
                "maxEvents=0",
                "maxEvents must be an integer from 1 to 100; got '0'",
            ),
            (
                "maxEvents=101",
                "maxEvents must be an integer from 1 to 100; got '101'",
            ),
            (
                "maxEvents=ten",
                "maxEvents must be an integer from 1 to 100; got 'ten'",
            ),
            (
                "maxEvents=-1",
                "maxEvents must be an integer from 1 to 100; got '-1'",
            ),
        ] {
            assert_eq!(message(query(text).max_events().unwrap_err()), expected);
        }
        for (text, expected) in [
            (
                "maxWaitTime=9",
                "maxWaitTime must be an integer from 10 to 120; got '9'",
            ),
            (
                "maxWaitTime=121",
                "maxWaitTime must be an integer from 10 to 120; got '121'",
            ),
        ] {
            assert_eq!(message(query(text).max_wait().unwrap_err()), expected);
        }
    }

    #[test]
    fn release_delays_are_event_grids_five() {
        assert_eq!(query("").release_delay(), Ok(Duration::ZERO));
        for seconds in RELEASE_DELAYS {
            assert_eq!(
                query(&format!("releaseDelayInSeconds={seconds}")).release_delay(),
                Ok(Duration::from_secs(u64::from(seconds)))
            );
        }
        assert_eq!(
            message(
                query("releaseDelayInSeconds=30")
                    .release_delay()
                    .unwrap_err()
            ),
            "releaseDelayInSeconds must be one of 0, 10, 60, 600, 3600; got '30'"
        );
    }
}
