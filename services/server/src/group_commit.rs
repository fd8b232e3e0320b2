//! Group commit: concurrent writes hand their job to one writer task, which runs
//! whatever has queued up in one transaction and answers each caller only after
//! that commit. The database syncs its log once per group, not once per write.

use std::fmt;

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{mpsc, oneshot};

/// What [`Job::run`] returns: a job crate needs no `futures` of its own.
pub use futures::future::BoxFuture;

/// Most jobs in one transaction.
const MAX_GROUP: usize = 256;
/// Jobs queued for the writer; beyond it callers wait for room.
const QUEUE: usize = 1024;

/// One write of a group: its statements, run inside a transaction that other
/// jobs share — or, after the group failed, a transaction of its own.
pub trait Job: Send + Sync + 'static {
    /// What the caller is answered after the commit.
    type Output: Send + 'static;
    /// Why the job failed. Any failure rolls back the whole group; its jobs are
    /// then run again one by one, so a job must be safe to run again after a
    /// rollback, and should recognise its own write if a commit that reported
    /// failure did take place.
    type Error: From<sqlx::Error> + fmt::Display + Send + 'static;

    /// Runs the job's statements in `transaction` (committed by the writer).
    fn run<'a>(
        &'a self,
        transaction: &'a mut Transaction<'static, Any>,
    ) -> BoxFuture<'a, Result<Self::Output, Self::Error>>;

    /// Runs a whole group in `transaction`: one output per job, in order. Each
    /// job in turn unless overridden by a kind of job whose group can share its
    /// statements (one round trip per group instead of one per job).
    fn run_group<'a>(
        jobs: &'a [&'a Self],
        transaction: &'a mut Transaction<'static, Any>,
    ) -> BoxFuture<'a, Result<Vec<Self::Output>, Self::Error>>
    where
        Self: Sized,
    {
        Box::pin(async move {
            let mut outputs = Vec::with_capacity(jobs.len());
            for job in jobs {
                outputs.push(job.run(transaction).await?);
            }
            Ok(outputs)
        })
    }
}

/// A job waiting for its group's commit, and who to tell.
struct Pending<J: Job> {
    job: J,
    done: oneshot::Sender<Result<J::Output, J::Error>>,
}

/// The queue to a writer task.
pub struct GroupCommit<J: Job> {
    queue: mpsc::Sender<Pending<J>>,
}

impl<J: Job> Clone for GroupCommit<J> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<J: Job> fmt::Debug for GroupCommit<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("job", &std::any::type_name::<J>())
            .finish_non_exhaustive()
    }
}

impl<J: Job> GroupCommit<J> {
    /// Starts the writer on `pool`; it stops when the last handle is dropped.
    pub fn start(pool: AnyPool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(pool, pending));
        Self { queue }
    }

    /// Runs `job` in the next group, answering once that group committed (or,
    /// if it failed, once the job committed or failed alone).
    pub async fn run(&self, job: J) -> Result<J::Output, J::Error> {
        let stopped = || J::Error::from(sqlx::Error::PoolClosed);
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Pending { job, done })
            .await
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }
}

async fn write_groups<J: Job>(pool: AnyPool, mut pending: mpsc::Receiver<Pending<J>>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        match run_group(&pool, &group).await {
            Ok(outputs) => {
                for (pending, output) in group.drain(..).zip(outputs) {
                    let _ = pending.done.send(Ok(output));
                }
            }
            // One failing job or a failed commit must not fail the others:
            // each is run again on its own.
            Err(error) => {
                tracing::debug!(%error, jobs = group.len(), "group commit failed; running its jobs one by one");
                for pending in group.drain(..) {
                    let output = run_alone(&pool, &pending.job).await;
                    let _ = pending.done.send(output);
                }
            }
        }
    }
}

/// Runs every job of `group` in one transaction: their outputs, in order.
async fn run_group<J: Job>(
    pool: &AnyPool,
    group: &[Pending<J>],
) -> Result<Vec<J::Output>, J::Error> {
    let jobs: Vec<&J> = group.iter().map(|pending| &pending.job).collect();
    let mut transaction = pool.begin().await?;
    let outputs = J::run_group(&jobs, &mut transaction).await?;
    debug_assert_eq!(outputs.len(), jobs.len(), "one output per job");
    transaction.commit().await?;
    Ok(outputs)
}

/// Runs `job` in a transaction of its own (rolled back if it fails).
async fn run_alone<J: Job>(pool: &AnyPool, job: &J) -> Result<J::Output, J::Error> {
    let mut transaction = pool.begin().await?;
    let output = job.run(&mut transaction).await?;
    transaction.commit().await?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts its value; fails (after its insert) if the value is negative.
    struct Insert(i64);

    impl Job for Insert {
        type Output = i64;
        type Error = sqlx::Error;

        fn run<'a>(
            &'a self,
            transaction: &'a mut Transaction<'static, Any>,
        ) -> BoxFuture<'a, Result<i64, sqlx::Error>> {
            Box::pin(async move {
                sqlx::query("INSERT INTO rows (value) VALUES ($1)")
                    .bind(self.0)
                    .execute(&mut **transaction)
                    .await?;
                if self.0 < 0 {
                    return Err(sqlx::Error::Protocol("negative".into()));
                }
                Ok(self.0 * 10)
            })
        }
    }

    async fn pool() -> AnyPool {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        sqlx::query("CREATE TABLE rows (value INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .expect("table");
        pool
    }

    async fn rows(pool: &AnyPool) -> Vec<i64> {
        sqlx::query_scalar("SELECT value FROM rows ORDER BY value")
            .fetch_all(pool)
            .await
            .expect("rows")
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_alone_and_the_others_of_its_group_still_commit() {
        let pool = pool().await;
        let commits = GroupCommit::start(pool.clone());
        // Queued together, so that the writer may take them as one group.
        let answers =
            futures::future::join_all([1, -2, 3, 4].map(|value| commits.run(Insert(value)))).await;
        let answers: Vec<Option<i64>> = answers.into_iter().map(Result::ok).collect();
        assert_eq!(answers, [Some(10), None, Some(30), Some(40)]);
        assert_eq!(rows(&pool).await, [1, 3, 4], "nothing of the failed job");
    }
}
