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

use super::sql::{migrations, select_users, to_i64, to_u64};
use super::{KeyCheck, LockState, PutCode, Store, StoreError, UserProfile, UserRecord, UserSource};
use crate::clock::UnixTime;
use crate::domain::{Algorithm, Username};
use crate::otp::OtpParams;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies migrations (sqlx takes an advisory lock, so instances starting
    /// together do not race on the schema).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("mfa");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrations!("postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl PgStore {
    /// PostgreSQL already shares WAL flushes between concurrent commits: run writes directly.
    async fn execute_write(
        &self,
        query: sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64, StoreError> {
        Ok(query.execute(&self.pool).await?.rows_affected())
    }
}

super::sql::sql_store!(PgStore, sqlx::Postgres, null_safe_eq = "IS NOT DISTINCT FROM");
