//! Several sources in one pipeline (`[[pipeline.sources]]`, docs/group-by-and-merge.md): each
//! runs its own read loop, with its own share of the in-flight budget and its index stamped
//! on every record's [`Placement::source`], and their records meet in one channel.
//!
//! Acks need no routing of their own: each record's [`AckHandle`](super::AckHandle) already
//! holds its own source's closure, so an ack reaches the source that delivered the record.
//! Within one source the order is the source's own; between sources there is none (they are
//! merged as they arrive).
//!
//! A stop, or the failure of any one source, stops them all: the pipeline's restart policy
//! then starts a new session of every source, which redeliver what was not acked.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ConnectSource, RunningSource, SourceError, SourceMessage, SourceStart};

/// Several sources read as one, in the order of the config.
pub struct MergedSource {
    sources: Vec<Arc<dyn ConnectSource>>,
}

impl MergedSource {
    /// Merges `sources`; each record's placement names its source's index in this list.
    pub fn new(sources: Vec<Arc<dyn ConnectSource>>) -> Self {
        Self { sources }
    }

    /// The in-flight budget of each source: `total` shared out evenly (at least one each), so
    /// the sources together never hold more than the pipeline's `max_in_flight` (beyond one
    /// per source when there are more sources than slots).
    fn share_of(total: usize, sources: usize) -> usize {
        (total / sources.max(1)).max(1)
    }
}

impl ConnectSource for MergedSource {
    fn kind(&self) -> &'static str {
        "merged"
    }

    fn start(&self, start: SourceStart) -> BoxFuture<'_, Result<RunningSource, SourceError>> {
        Box::pin(async move {
            let SourceStart {
                max_in_flight,
                observer,
                stop,
                source: _,
            } = start;
            // Every source stops when the pipeline stops, or when one of them fails.
            let all = stop.child_token();
            let share = Self::share_of(max_in_flight, self.sources.len());
            let mut running = Vec::with_capacity(self.sources.len());
            for (index, source) in self.sources.iter().enumerate() {
                let start = SourceStart {
                    max_in_flight: share,
                    observer: observer.clone(),
                    stop: all.clone(),
                    source: index as u32,
                };
                match source.start(start).await {
                    Ok(started) => running.push(started),
                    Err(error) => {
                        // Those started close again (nothing of theirs is in flight yet).
                        all.cancel();
                        for started in running {
                            drop(started.messages);
                            let _ = started.task.await;
                        }
                        return Err(error);
                    }
                }
            }
            let (merged_tx, merged_rx) = mpsc::channel(max_in_flight.max(1));
            let mut tasks = Vec::with_capacity(running.len());
            for RunningSource { messages, task } in running {
                tokio::spawn(forward(messages, merged_tx.clone(), all.clone()));
                tasks.push(task);
            }
            drop(merged_tx);
            let task = tokio::spawn(wait_for_all(tasks, all));
            Ok(RunningSource {
                messages: merged_rx,
                task,
            })
        })
    }

    fn hands_over_partitions(&self) -> bool {
        self.sources.iter().any(|s| s.hands_over_partitions())
    }

    fn hands_over_partitions_of(&self, source: u32) -> bool {
        (self.sources.get(source as usize)).is_some_and(|s| s.hands_over_partitions())
    }
}

/// Moves one source's records into the merged channel until that source or the pipeline
/// stops taking them. A record that cannot be handed on is dropped, which releases it to its
/// source (it comes again).
async fn forward(
    mut from: mpsc::Receiver<SourceMessage>,
    to: mpsc::Sender<SourceMessage>,
    all: CancellationToken,
) {
    while let Some(message) = from.recv().await {
        if to.send(message).await.is_err() {
            all.cancel();
            return;
        }
    }
}

/// Waits for every source's read loop; the first failure stops the others (they drain what
/// they handed out and close) and is what the merged source ends with.
async fn wait_for_all(
    tasks: Vec<tokio::task::JoinHandle<Result<(), SourceError>>>,
    all: CancellationToken,
) -> Result<(), SourceError> {
    let mut pending: futures::stream::FuturesUnordered<_> = tasks.into_iter().collect();
    let mut first_error = None;
    while let Some(joined) = pending.next().await {
        let result = joined.expect("source task panicked");
        if let Err(error) = result {
            all.cancel();
            first_error.get_or_insert(error);
        } else if !all.is_cancelled() {
            // A source that ended cleanly without a stop: take the others down too, so the
            // pipeline sees the merged stream end as one.
            all.cancel();
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_out_with_at_least_one_slot_each() {
        assert_eq!(MergedSource::share_of(1000, 2), 500);
        assert_eq!(MergedSource::share_of(1, 3), 1);
    }
}
