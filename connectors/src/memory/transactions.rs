//! Transactions in the memory sink, with Kafka's rules: what a writer sends becomes visible
//! only when it commits, together with its checkpoint; opening a writer bumps its id's epoch,
//! which fences every older writer of the id (their uncommitted records are dropped).

use std::collections::HashMap;

use sluice_record::OutputRecord;

use super::sink::MemorySink;
use crate::sink::SinkError;
use crate::transactions::{Checkpoint, Resume, TransactionalWriter, WriterScope};

/// What the memory sink keeps per transactional id.
#[derive(Default)]
pub(super) struct Transactions {
    scopes: HashMap<String, ScopeLog>,
}

#[derive(Default)]
struct ScopeLog {
    epoch: u64,
    /// Every committed checkpoint, oldest first.
    checkpoints: Vec<Checkpoint>,
}

impl Transactions {
    /// Fences the earlier writers of `scope` and returns the new writer's epoch and what the
    /// scope committed.
    pub(super) fn open(&mut self, scope: &WriterScope) -> (u64, Resume) {
        let log = self
            .scopes
            .entry(scope.transactional_id.clone())
            .or_default();
        log.epoch += 1;
        let mut resume = Resume::default();
        let mut ids: Vec<&String> = Vec::new();
        let mut ordered_seen = false;
        for checkpoint in log.checkpoints.iter().rev() {
            resume
                .source
                .get_or_insert_with(|| checkpoint.source().to_owned());
            match checkpoint {
                Checkpoint::Ordered { through, also, .. } if !ordered_seen => {
                    ordered_seen = true;
                    resume.through = *through;
                    resume.also = also.iter().copied().collect();
                }
                Checkpoint::Unordered { ids: committed, .. } if ids.len() < scope.ids_window => {
                    ids.extend(committed.iter().rev());
                }
                _ => {}
            }
        }
        resume.ids = ids.into_iter().rev().cloned().collect();
        (log.epoch, resume)
    }

    fn check_epoch(&self, id: &str, epoch: u64) -> Result<(), SinkError> {
        if self.scopes.get(id).is_some_and(|log| log.epoch == epoch) {
            Ok(())
        } else {
            Err(SinkError::Fenced {
                transactional_id: id.to_owned(),
            })
        }
    }
}

/// A transactional writer of the memory sink.
pub struct MemoryWriter {
    sink: MemorySink,
    transactional_id: String,
    epoch: u64,
    /// Sent in the open transaction.
    pending: Vec<OutputRecord>,
    /// A refusal in the delivery report of one of them: it dooms the transaction, as in Kafka.
    doomed: Option<SinkError>,
}

impl MemoryWriter {
    pub(super) fn new(sink: MemorySink, transactional_id: String, epoch: u64) -> Self {
        Self {
            sink,
            transactional_id,
            epoch,
            pending: Vec::new(),
            doomed: None,
        }
    }

    fn usable(&self) -> Result<(), SinkError> {
        self.sink.refuse_if_down()?;
        self.sink
            .transactions()
            .check_epoch(&self.transactional_id, self.epoch)
    }
}

impl TransactionalWriter for MemoryWriter {
    fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    async fn send(&mut self, record: &OutputRecord) -> Result<(), SinkError> {
        self.usable()?;
        if self.sink.refuses(record) && self.doomed.is_none() {
            self.doomed = Some(SinkError::Refused {
                topic: record.topic.clone().unwrap_or_default(),
                too_large: false,
                source: "the memory sink refused the record".into(),
            });
        }
        self.pending.push(record.clone());
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.usable()
    }

    /// Commits (unless fenced or down); with lost delivery reports it commits and then reports
    /// a failure, as a commit whose answer was lost does. A transaction with a refused record
    /// is aborted instead, as the Kafka writer does.
    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        self.usable()?;
        if let Some(refusal) = self.doomed.take() {
            self.pending.clear();
            return Err(SinkError::RefusedInTransaction {
                transactional_id: self.transactional_id.clone(),
                source: Box::new(refusal),
            });
        }
        let records = std::mem::take(&mut self.pending);
        let mut transactions = self.sink.transactions();
        transactions
            .scopes
            .get_mut(&self.transactional_id)
            .expect("an open writer's scope is known")
            .checkpoints
            .push(checkpoint.clone());
        drop(transactions);
        for record in &records {
            self.sink.append(record);
        }
        if self.sink.loses_reports() {
            return Err(SinkError::Transaction {
                transactional_id: self.transactional_id.clone(),
                source: "the memory sink lost the commit's answer".into(),
            });
        }
        Ok(())
    }
}
