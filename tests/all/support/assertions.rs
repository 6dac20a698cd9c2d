//! What the delivery tests check on the records a pipeline wrote.

use std::collections::{BTreeSet, HashMap};

use sluice_tests::kafka::KafkaRecord;

/// The numeric header `name` of `record` (every test record carries its `seq`).
pub(crate) fn header_u64(record: &KafkaRecord, name: &str) -> u64 {
    record
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("record without a numeric {name} header: {record:?}"))
}

/// The `seq` property every test record carries (kept as a header through the pipeline).
pub(crate) fn seq_of(record: &KafkaRecord) -> u64 {
    header_u64(record, "seq")
}

/// Every distinct `seq` of `records`.
pub(crate) fn distinct_seqs(records: &[KafkaRecord]) -> BTreeSet<u64> {
    records.iter().map(seq_of).collect()
}

/// Prints how many of `records` arrived, distinct, duplicated, and how many of `expected` are
/// missing (duplicates are allowed at-least-once: counted, not asserted). Returns the distinct
/// sequence numbers for the test's own assertion.
pub(crate) fn report_counts(
    context: &str,
    records: &[KafkaRecord],
    expected: &BTreeSet<u64>,
) -> BTreeSet<u64> {
    let distinct = distinct_seqs(records);
    eprintln!(
        "{context}: {} records in Kafka, {} distinct, {} duplicates, {} lost",
        records.len(),
        distinct.len(),
        records.len() - distinct.len(),
        expected.difference(&distinct).count()
    );
    distinct
}

/// Every expected sequence number arrived (the message names a few missing ones, not all).
pub(crate) fn assert_none_missing(arrived: &BTreeSet<u64>, expected: &BTreeSet<u64>) {
    let missing: Vec<u64> = expected.difference(arrived).copied().collect();
    assert!(
        missing.is_empty(),
        "{} of {} expected messages missing, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(20)]
    );
}

/// No `seq` twice: for runs where nothing failed, so nothing was redelivered.
pub(crate) fn assert_no_duplicates(records: &[KafkaRecord]) {
    let distinct = distinct_seqs(records);
    assert_eq!(
        records.len(),
        distinct.len(),
        "{} records for {} distinct sequence numbers",
        records.len(),
        distinct.len()
    );
}

/// Per key: one partition, and sequence numbers in increasing order in the partition
/// (repeats from redelivery ignored: the first copy of each counts).
pub(crate) fn assert_per_key_order(records: &[KafkaRecord]) {
    let mut sorted: Vec<&KafkaRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut seen = BTreeSet::new();
    for record in sorted {
        let key = record.key_str().expect("every record has a key");
        let partition = *partition_of.entry(key).or_insert(record.partition);
        assert_eq!(
            partition, record.partition,
            "key {key} landed on two partitions"
        );
        let seq = seq_of(record);
        if seen.insert(seq)
            && let Some(previous) = last.insert(key, seq)
        {
            assert!(
                previous < seq,
                "order broken for {key}: {previous} before {seq}"
            );
        }
    }
}

/// The log lines a stalled-then-recovered pipeline must have written.
pub(crate) fn assert_stall_and_recovery_logged(log: &str) {
    for line in [
        "in-flight limit reached and nothing acked",
        "pipeline interrupted by a broker failure",
        "pipeline restarted",
        "acks resumed",
    ] {
        assert!(log.contains(line), "{line:?} is not in the log:\n{log}");
    }
}
