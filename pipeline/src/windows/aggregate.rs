//! The built-in aggregates over a window's records: each keeps an [`Accumulator`] that
//! records are added to, that merges with another (session windows joining), and that is
//! emitted as the result record's value once the window closes.
//!
//! Results are text: `count` a decimal integer; `sum`, `min`, `max`, `mean` a decimal
//! number (Rust's shortest round-trip form; `min`/`max`/`mean` of no number is an empty
//! value); `latest` the value of the record with the latest event time (the later one in
//! source order on a tie); `collect` a JSON array of the values in the order they were added
//! (a value that is JSON goes in as is, any other as a string, invalid UTF-8 replaced).

use serde::{Deserialize, Serialize};

use super::settings::BuiltinAggregate;

/// A window's running aggregate, as its state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Accumulator {
    Count(u64),
    Sum(f64),
    Min(Option<f64>),
    Max(Option<f64>),
    Mean { sum: f64, count: u64 },
    Latest(Option<(i64, Vec<u8>)>),
    Collect(Vec<Vec<u8>>),
}

/// How the numeric built-ins read a record's number.
#[derive(Debug, Clone)]
pub(crate) struct NumberField {
    /// A JSON pointer into the value; `None`: the value is a decimal string.
    pointer: Option<String>,
}

impl NumberField {
    pub(crate) fn new(pointer: Option<String>) -> Self {
        Self { pointer }
    }

    /// The number in `value`, if there is one.
    pub(crate) fn read(&self, value: &[u8]) -> Option<f64> {
        match &self.pointer {
            None => std::str::from_utf8(value).ok()?.trim().parse().ok(),
            Some(pointer) => {
                let json: serde_json::Value = serde_json::from_slice(value).ok()?;
                let found = json.pointer(pointer)?;
                match found {
                    serde_json::Value::Number(number) => number.as_f64(),
                    serde_json::Value::String(text) => text.trim().parse().ok(),
                    _ => None,
                }
            }
        }
    }
}

impl Accumulator {
    /// An empty accumulator of `aggregate`.
    pub(crate) fn new(aggregate: BuiltinAggregate) -> Self {
        match aggregate {
            BuiltinAggregate::Count => Self::Count(0),
            BuiltinAggregate::Sum => Self::Sum(0.0),
            BuiltinAggregate::Min => Self::Min(None),
            BuiltinAggregate::Max => Self::Max(None),
            BuiltinAggregate::Mean => Self::Mean { sum: 0.0, count: 0 },
            BuiltinAggregate::Latest => Self::Latest(None),
            BuiltinAggregate::Collect => Self::Collect(Vec::new()),
        }
    }

    /// Adds a record of event time `time_ms` whose value is `value` (`number` read from it
    /// for the numeric ones; a record without one leaves them unchanged).
    pub(crate) fn add(&mut self, time_ms: i64, value: &[u8], number: Option<f64>) {
        match self {
            Self::Count(count) => *count += 1,
            Self::Sum(sum) => *sum += number.unwrap_or(0.0),
            Self::Min(min) => *min = fold(*min, number, f64::min),
            Self::Max(max) => *max = fold(*max, number, f64::max),
            Self::Mean { sum, count } => {
                if let Some(number) = number {
                    *sum += number;
                    *count += 1;
                }
            }
            Self::Latest(latest) => {
                if latest.as_ref().is_none_or(|(at, _)| time_ms >= *at) {
                    *latest = Some((time_ms, value.to_vec()));
                }
            }
            Self::Collect(values) => values.push(value.to_vec()),
        }
    }

    /// Merges `later` (the accumulator of the window after this one) into this one.
    pub(crate) fn merge(&mut self, later: Accumulator) {
        match (self, later) {
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::Sum(a), Self::Sum(b)) => *a += b,
            (Self::Min(a), Self::Min(b)) => *a = fold(*a, b, f64::min),
            (Self::Max(a), Self::Max(b)) => *a = fold(*a, b, f64::max),
            (Self::Mean { sum, count }, Self::Mean { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Self::Latest(a), Self::Latest(b)) => {
                if let Some((at, value)) = b
                    && a.as_ref().is_none_or(|(mine, _)| at >= *mine)
                {
                    *a = Some((at, value));
                }
            }
            (Self::Collect(a), Self::Collect(b)) => a.extend(b),
            (mine, other) => {
                unreachable!("one stage's accumulators are alike: {mine:?}, {other:?}")
            }
        }
    }

    /// The result record's value.
    pub(crate) fn emit(&self) -> Vec<u8> {
        let number = |n: Option<f64>| n.map(|n| n.to_string()).unwrap_or_default();
        match self {
            Self::Count(count) => count.to_string().into_bytes(),
            Self::Sum(sum) => sum.to_string().into_bytes(),
            Self::Min(min) => number(*min).into_bytes(),
            Self::Max(max) => number(*max).into_bytes(),
            Self::Mean { sum, count } => {
                number((*count > 0).then(|| sum / *count as f64)).into_bytes()
            }
            Self::Latest(latest) => latest.as_ref().map(|(_, v)| v.clone()).unwrap_or_default(),
            Self::Collect(values) => {
                let items: Vec<serde_json::Value> = values
                    .iter()
                    .map(|value| {
                        serde_json::from_slice(value).unwrap_or_else(|_| {
                            serde_json::Value::String(String::from_utf8_lossy(value).into_owned())
                        })
                    })
                    .collect();
                serde_json::to_vec(&items).expect("JSON values serialise")
            }
        }
    }
}

fn fold(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(aggregate: BuiltinAggregate, values: &[(i64, &str)]) -> String {
        let field = NumberField::new(None);
        let mut acc = Accumulator::new(aggregate);
        for (time, value) in values {
            acc.add(*time, value.as_bytes(), field.read(value.as_bytes()));
        }
        String::from_utf8(acc.emit()).unwrap()
    }

    const VALUES: [(i64, &str); 4] = [(3, "2"), (1, "5.5"), (3, "-1"), (2, "not a number")];

    #[test]
    fn count_counts_every_record() {
        assert_eq!(run(BuiltinAggregate::Count, &VALUES), "4");
    }

    #[test]
    fn sum_min_max_mean_read_decimal_values_and_leave_out_the_rest() {
        assert_eq!(run(BuiltinAggregate::Sum, &VALUES), "6.5");
        assert_eq!(run(BuiltinAggregate::Min, &VALUES), "-1");
        assert_eq!(run(BuiltinAggregate::Max, &VALUES), "5.5");
        assert_eq!(
            run(BuiltinAggregate::Mean, &VALUES[..3]),
            "2.1666666666666665"
        );
        assert_eq!(run(BuiltinAggregate::Mean, &[(1, "x")]), "");
    }

    #[test]
    fn latest_takes_the_latest_event_time_and_the_later_record_on_a_tie() {
        assert_eq!(run(BuiltinAggregate::Latest, &VALUES), "-1");
    }

    #[test]
    fn collect_keeps_json_values_and_quotes_the_rest() {
        let collected = run(BuiltinAggregate::Collect, &[(1, "{\"a\":1}"), (2, "plain")]);
        assert_eq!(collected, r#"[{"a":1},"plain"]"#);
    }

    #[test]
    fn a_json_pointer_reads_numbers_and_numeric_strings() {
        let field = NumberField::new(Some("/order/amount".into()));
        assert_eq!(field.read(br#"{"order":{"amount":12.5}}"#), Some(12.5));
        assert_eq!(field.read(br#"{"order":{"amount":"7"}}"#), Some(7.0));
        assert_eq!(field.read(br#"{"order":{}}"#), None);
        assert_eq!(field.read(b"12"), None);
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        for aggregate in [
            BuiltinAggregate::Count,
            BuiltinAggregate::Sum,
            BuiltinAggregate::Min,
            BuiltinAggregate::Max,
            BuiltinAggregate::Mean,
            BuiltinAggregate::Latest,
            BuiltinAggregate::Collect,
        ] {
            let field = NumberField::new(None);
            let (mut first, mut second, mut whole) = (
                Accumulator::new(aggregate),
                Accumulator::new(aggregate),
                Accumulator::new(aggregate),
            );
            for (i, (time, value)) in VALUES.iter().enumerate() {
                let number = field.read(value.as_bytes());
                let part = if i < 2 { &mut first } else { &mut second };
                part.add(*time, value.as_bytes(), number);
                whole.add(*time, value.as_bytes(), number);
            }
            first.merge(second);
            assert_eq!(first.emit(), whole.emit(), "{aggregate:?}");
        }
    }
}
