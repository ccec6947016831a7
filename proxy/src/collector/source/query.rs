//! Query mode of the collector's source: one `/api/v1/query` with `{clause}[<window>ms]` per
//! policy clause (range selectors return raw samples), for sources without remote read, such
//! as prom-label-proxy. Answers are JSON, read whole: this mode is not streamed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Window;
use crate::client::describe;
use crate::collector::stream::RawSeries;
use crate::remote_write::{self, CONTENT_TYPE, Label, TimeSeries};
use crate::tenant::Policy;

/// Send and read a successful answer's body; anything else is an error naming the status and
/// the start of the answer.
async fn body_of(request: reqwest::RequestBuilder) -> Result<bytes::Bytes, String> {
    let response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| describe(&e))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        return Err(format!("HTTP {}: {}", status.as_u16(), text.trim()));
    }
    Ok(bytes)
}

/// Query mode: one `{clause}[<range>ms]` instant query per clause at the window's end. The
/// range reaches 1 ms before the window and samples before it are dropped here, so the result is
/// exactly `[start, end]` whether range selectors include their left end (Prometheus 2) or not
/// (Prometheus 3).
pub(super) async fn query_range_selectors(
    client: &reqwest::Client,
    member: &str,
    tenant_header: Option<(&str, &str)>,
    policy: &Policy,
    window: Window,
    timeout: Duration,
) -> Result<Vec<RawSeries>, String> {
    let range_ms = window.end_ms - window.start_ms + 1;
    let time = format!(
        "{}.{:03}",
        window.end_ms.div_euclid(1000),
        window.end_ms.rem_euclid(1000)
    );
    let mut results = Vec::new();
    for (query, clause) in policy.clauses.iter().enumerate() {
        let selector = clause
            .to_selector()
            .map_err(|e| format!("invalid clause: {e}"))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &format!("{selector}[{range_ms}ms]"))
            .append_pair("time", &time)
            .finish();
        let mut request = client
            .post(format!("{member}/api/v1/query"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .timeout(timeout);
        if let Some((name, value)) = tenant_header {
            request = request.header(name, value);
        }
        let bytes = body_of(request).await?;
        for series in parse_matrix(&bytes, window.start_ms)? {
            if series.samples.is_empty() {
                continue;
            }
            results.push(RawSeries {
                query,
                labels: series.labels.into(),
                samples: series.samples,
            });
        }
    }
    Ok(results)
}

#[derive(serde::Deserialize)]
struct QueryAnswer {
    data: QueryData,
}

#[derive(serde::Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

#[derive(serde::Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// A `matrix` answer as series, samples before `start_ms` dropped.
fn parse_matrix(body: &[u8], start_ms: i64) -> Result<Vec<TimeSeries>, String> {
    let answer: QueryAnswer =
        serde_json::from_slice(body).map_err(|e| format!("unreadable query answer: {e}"))?;
    if answer.data.result_type != "matrix" {
        return Err(format!(
            "expected a matrix answer, got {}",
            answer.data.result_type
        ));
    }
    let mut out = Vec::new();
    for s in answer.data.result {
        let mut samples = Vec::with_capacity(s.values.len());
        for (t, v) in s.values {
            let timestamp = (t * 1000.0).round() as i64;
            if timestamp < start_ms {
                continue;
            }
            let value = match v.as_str() {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                other => other
                    .parse()
                    .map_err(|_| format!("unreadable sample value {other:?}"))?,
            };
            samples.push(remote_write::Sample { value, timestamp });
        }
        out.push(TimeSeries {
            labels: s
                .metric
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
            samples,
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_answers_keep_raw_samples_inside_the_window() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"a","z":"1"},"values":[[99.999,"1"],[100,"2"],[101.5,"+Inf"],[102,"NaN"]]}]}}"#;
        let series = parse_matrix(body, 100_000).unwrap();
        assert_eq!(series.len(), 1);
        let times: Vec<i64> = series[0].samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(
            times,
            [100_000, 101_500, 102_000],
            "the sample before the window is dropped"
        );
        assert_eq!(series[0].samples[1].value, f64::INFINITY);
        assert!(series[0].samples[2].value.is_nan());
        assert!(parse_matrix(br#"{"data":{"resultType":"vector","result":[]}}"#, 0).is_err());
    }
}
