#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    launch::serve().await
}
