//! The shared store for several instances: PostgreSQL.
//!
//! Every guarantee that must hold across instances is a single conditional statement, so
//! the database serialises it: two instances accepting the same code race on
//! `UPDATE ... WHERE last_step < $step`, and only one row update wins.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::time::Instant;

use super::sql::{RawUser, Statement, Value, migrations, select_users, to_i64, to_u64};
use super::{KeyCheck, LockState, PutCode, Store, StoreError, UserProfile, UserRecord};
use crate::clock::UnixTime;
use crate::domain::Username;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// How long start-up keeps trying to reach a PostgreSQL that refuses connections (one
/// started alongside this process may still be starting), whatever the per-request wait.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

impl PgStore {
    /// Connects and applies migrations (sqlx takes an advisory lock, so instances starting
    /// together do not race on the schema). A request waits at most `acquire_timeout` for a
    /// connection: while the database is down, requests fail fast with 503 and the pool
    /// reconnects by itself once it is back.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("mfa");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        let deadline = Instant::now() + STARTUP_WAIT.max(acquire_timeout);
        loop {
            match pool.acquire().await.map_err(StoreError::from) {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        migrations!("postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl PgStore {
    /// PostgreSQL already shares WAL flushes between concurrent commits: run writes directly.
    async fn execute_write(&self, write: Statement) -> Result<u64, StoreError> {
        let mut query = sqlx::query(write.sql);
        for value in write.params {
            query = match value {
                Value::Null => query.bind(None::<i64>),
                Value::Int(n) => query.bind(n),
                Value::Text(t) => query.bind(t),
                Value::Blob(b) => query.bind(b),
            };
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    async fn read_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = select_users!("WHERE username = $1");
        let row = sqlx::query(SQL).bind(username.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::user_from_row).transpose()
    }

    /// Nothing to tune: PostgreSQL groups concurrent commits itself.
    #[allow(clippy::unused_self, clippy::needless_pass_by_value)]
    fn watch_open_connections(&self, _open_connections: std::sync::Arc<std::sync::atomic::AtomicUsize>) {}

    async fn ping_database(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close_database(&self) {
        self.pool.close().await;
    }
}

super::sql::sql_store!(PgStore, sqlx::Postgres);
