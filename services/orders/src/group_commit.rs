//! New orders are committed in groups (`tokenmesh_server::group_commit`):
//! concurrent `PlaceOrder`s hand their insert to one writer task, and no order
//! is acknowledged before its group's commit. A group is one multi-row
//! `INSERT`: one statement (one hop to the database) per group, not per order.

use std::{collections::HashSet, fmt::Write};

use sqlx::{Any, Transaction};
use tokenmesh_server::group_commit::{BoxFuture, GroupCommit, Job};

use crate::store::{COLUMNS, OrderRecord};

/// The writer of new orders.
pub(crate) type OrderCommits = GroupCommit<InsertOrder>;

/// Inserts an order unless its subject already used its `request_id`: then
/// false, with nothing written (a retry, or two calls with one id in the same
/// group, or the order of a failed group whose commit did take place).
#[derive(Debug)]
pub(crate) struct InsertOrder(pub(crate) OrderRecord);

/// `INSERT` of `rows` orders that skips each whose subject already used its
/// request id, answering the ids of those it inserted.
fn insert_statement(rows: usize) -> String {
    let columns = COLUMNS.split(", ").count();
    let mut sql = format!("INSERT INTO orders ({COLUMNS}) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let separator = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{separator}${}", row * columns + column + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (subject, request_id) DO NOTHING RETURNING id");
    sql
}

/// Inserts `orders` in one statement: whether each was inserted (its id came back).
async fn insert(
    orders: &[&InsertOrder],
    transaction: &mut Transaction<'static, Any>,
) -> Result<Vec<bool>, sqlx::Error> {
    let sql = insert_statement(orders.len());
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for InsertOrder(order) in orders.iter().copied() {
        query = query
            .bind(&order.id)
            .bind(&order.subject)
            .bind(&order.product_id)
            .bind(order.quantity)
            .bind(&order.request_id)
            .bind(i64::from(order.entitlement_source))
            .bind(order.created_at_us);
    }
    let inserted: HashSet<String> = query
        .fetch_all(&mut **transaction)
        .await?
        .into_iter()
        .collect();
    Ok(orders
        .iter()
        .map(|InsertOrder(order)| inserted.contains(&order.id))
        .collect())
}

impl Job for InsertOrder {
    type Output = bool;
    type Error = sqlx::Error;

    fn run<'a>(
        &'a self,
        transaction: &'a mut Transaction<'static, Any>,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let inserted = insert(&[self], transaction).await?;
            Ok(inserted.first().copied().unwrap_or(false))
        })
    }

    fn run_group<'a>(
        jobs: &'a [&'a Self],
        transaction: &'a mut Transaction<'static, Any>,
    ) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
        Box::pin(insert(jobs, transaction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_numbers_every_rows_placeholders_in_turn() {
        assert_eq!(
            insert_statement(2),
            "INSERT INTO orders \
             (id, subject, product_id, quantity, request_id, entitlement_source, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (subject, request_id) DO NOTHING RETURNING id"
        );
    }
}
