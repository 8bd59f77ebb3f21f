//! pg_cron jobs: list, schedule, unschedule — with a clear error saying what
//! to do when pg_cron is not installed, not preloaded or not created.

use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

use crate::catalog;

#[derive(Debug, Error)]
pub enum CronError {
    #[error(
        "pg_cron is not installed on this server: install the package (Debian/Ubuntu: \
         `apt-get install postgresql-15-cron`), then add it to shared_preload_libraries and \
         restart (the shardready sandbox does both by itself: `shardready sandbox destroy && \
         shardready sandbox start`)"
    )]
    NotInstalled,
    #[error(
        "pg_cron is installed but not preloaded: add `shared_preload_libraries = 'pg_cron'` and \
         `cron.database_name = '{database}'` to postgresql.conf and restart the server"
    )]
    NotPreloaded { database: String },
    #[error(
        "pg_cron is preloaded but its extension is not in this database ({database}); \
         run `CREATE EXTENSION pg_cron` in the database named by cron.database_name ({cron_db})"
    )]
    NotCreated { database: String, cron_db: String },
    #[error("no pg_cron job named `{0}` (see `shardready jobs list`)")]
    NoSuchJob(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> CronError + '_ {
    move |e| CronError::Db(crate::db::DbError::new(context, e))
}

/// One row of `cron.job`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CronJob {
    pub jobid: i64,
    pub jobname: Option<String>,
    pub schedule: String,
    pub command: String,
    pub database: String,
    pub username: String,
    pub active: bool,
}

/// Fails with what to do unless pg_cron can be used from this connection.
pub async fn ensure(client: &Client) -> Result<(), CronError> {
    let has = catalog::extensions(client)
        .await
        .map_err(db("cannot read pg_extension"))?
        .iter()
        .any(|e| e.name == "pg_cron");
    if has {
        return Ok(());
    }
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(db("cannot read the database name"))?
        .get(0);
    if !catalog::extension_available(client, "pg_cron")
        .await
        .map_err(db("cannot read pg_available_extensions"))?
    {
        return Err(CronError::NotInstalled);
    }
    if !catalog::preloaded(client, "pg_cron")
        .await
        .map_err(db("cannot read shared_preload_libraries"))?
    {
        return Err(CronError::NotPreloaded { database });
    }
    let cron_db: String = client
        .query_one("SELECT current_setting('cron.database_name', true)", &[])
        .await
        .map_err(db("cannot read cron.database_name"))?
        .try_get::<_, Option<String>>(0)
        .ok()
        .flatten()
        .unwrap_or_else(|| "postgres".into());
    Err(CronError::NotCreated { database, cron_db })
}

pub async fn list(client: &Client) -> Result<Vec<CronJob>, CronError> {
    ensure(client).await?;
    Ok(client
        .query(
            "SELECT jobid, jobname, schedule, command, database, username, active \
             FROM cron.job ORDER BY jobid",
            &[],
        )
        .await
        .map_err(db("cannot read cron.job"))?
        .iter()
        .map(|r| CronJob {
            jobid: r.get(0),
            jobname: r.get(1),
            schedule: r.get(2),
            command: r.get(3),
            database: r.get(4),
            username: r.get(5),
            active: r.get(6),
        })
        .collect())
}

/// `cron.schedule(name, schedule, command)`; replaces a job of that name.
pub async fn schedule(
    client: &Client,
    name: &str,
    schedule: &str,
    command: &str,
) -> Result<i64, CronError> {
    ensure(client).await?;
    Ok(client
        .query_one(
            "SELECT cron.schedule($1, $2, $3)",
            &[&name, &schedule, &command],
        )
        .await
        .map_err(db("cron.schedule failed"))?
        .get(0))
}

/// `cron.unschedule(name)`.
pub async fn unschedule(client: &Client, name: &str) -> Result<(), CronError> {
    ensure(client).await?;
    let exists = client
        .query_opt("SELECT 1 FROM cron.job WHERE jobname = $1", &[&name])
        .await
        .map_err(db("cannot read cron.job"))?
        .is_some();
    if !exists {
        return Err(CronError::NoSuchJob(name.to_string()));
    }
    client
        .execute("SELECT cron.unschedule($1)", &[&name])
        .await
        .map_err(db("cron.unschedule failed"))?;
    Ok(())
}

/// Recent runs of a job (from `cron.job_run_details`): (status, message).
pub async fn runs(client: &Client, name: &str) -> Result<Vec<(String, String)>, CronError> {
    ensure(client).await?;
    Ok(client
        .query(
            "SELECT d.status, coalesce(d.return_message, '') FROM cron.job_run_details d \
             JOIN cron.job j USING (jobid) WHERE j.jobname = $1 ORDER BY d.runid",
            &[&name],
        )
        .await
        .map_err(db("cannot read cron.job_run_details"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
