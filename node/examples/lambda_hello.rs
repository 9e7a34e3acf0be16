//! A warm "hello" handler for the functions benchmark: the AWS Lambda
//! runtime API loop at `$AWS_LAMBDA_RUNTIME_API`, over one kept-alive
//! connection, answering `hello` to every call. It measures what the node
//! adds to a call rather than what a Python interpreter costs
//! (docs/BENCHMARKS.md).
//!
//! `cargo build --release -p peerbatch --example lambda_hello`, then put the
//! binary in a bundle and `peerbatch fn deploy hello DIR --command ./lambda_hello --warm`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let base = format!("http://{api}/2018-06-01/runtime/invocation");
    let agent = ureq::AgentBuilder::new().build();
    loop {
        let next = agent.get(&format!("{base}/next")).call()?;
        let id = next
            .header("lambda-runtime-aws-request-id")
            .ok_or("no Lambda-Runtime-Aws-Request-Id")?
            .to_string();
        let _event = next.into_string()?;
        agent
            .post(&format!("{base}/{id}/response"))
            .send_string("hello")?;
    }
}
