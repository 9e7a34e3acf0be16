//! The ceiling of the functions benchmark: a bare axum server answering
//! `hello` to any request, measured with the same load generator as a warm
//! function (docs/BENCHMARKS.md).
//!
//! `cargo run --release -p peerbatch --example hello_server -- 127.0.0.1:8099`

use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hello server on http://{}", listener.local_addr()?);
    let app = Router::new().fallback(|| async { "hello" });
    axum::serve(listener, app).await
}
