//! The state table's custom resource (`Custom::ApiaryStateTable`), in a function of its
//! own rather than the launch function's: the launch function's environment and role
//! name the state machines, whose functions name the table, so the table cannot be
//! served by it without a cycle. The code is the launch crate's ([`launch::state_table`]);
//! this function's role may touch only the table, its backups and the state key.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    launch::serve().await
}
