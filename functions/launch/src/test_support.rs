//! A loopback HTTP/1.1 server standing in for the presigned S3 URL a custom resource
//! answers: it records every request and answers with the statuses it was given.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the response body is JSON: {e}: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Captured>,
    /// Statuses to answer with, in order; 200 once they are used up.
    statuses: Vec<u16>,
}

pub struct CaptureServer {
    base: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl CaptureServer {
    /// Starts on a free loopback port; answers `statuses` in order, then 200.
    pub async fn start(statuses: &[u16]) -> CaptureServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            statuses: statuses.to_vec(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        CaptureServer { base, state, task }
    }

    /// A URL on this server, shaped like a presigned S3 URL.
    pub fn url(&self) -> String {
        format!(
            "{}/cloudformation-custom-resource-response-uswest2/arn%3Aaws%3Acloudformation%3Aus-west-2%3A123456789012%3Astack/acme/1%7CLaunch%7Cr-1?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=test",
            self.base
        )
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.state.lock().expect("capture state").requests.clone()
    }

    /// The last request's body as JSON.
    pub fn last_json(&self) -> Value {
        self.requests()
            .last()
            .expect("the server received a response")
            .json()
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(header_end) = read_until_headers(&mut stream, &mut buffer).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let target = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        buffer.drain(..header_end + 4);
        while buffer.len() < length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buffer.drain(..length).collect();
        let status = {
            let mut state = state.lock().expect("capture state");
            state.requests.push(Captured {
                method,
                target,
                headers,
                body,
            });
            if state.statuses.is_empty() {
                200
            } else {
                state.statuses.remove(0)
            }
        };
        let answer = format!("HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads until `buffer` holds a complete header block; returns where it ends.
async fn read_until_headers(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// DescribeStacks finding `stack_id` in `status`.
pub fn stack_in(
    stack_id: &str,
    status: aws_sdk_cloudformation::types::StackStatus,
) -> aws_smithy_mocks::Rule {
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_sdk_cloudformation::primitives::DateTime;
    use aws_sdk_cloudformation::types::Stack;
    let stack_id = stack_id.to_owned();
    aws_smithy_mocks::mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(
        move || {
            DescribeStacksOutput::builder()
                .stacks(
                    Stack::builder()
                        .stack_id(&stack_id)
                        .stack_name(crate::request::stack_name_of(&stack_id))
                        .stack_status(status.clone())
                        .creation_time(DateTime::from_secs(0))
                        .build(),
                )
                .build()
        },
    )
}

/// A CloudFormation client whose DescribeStacks says `stack_id` is being deleted
/// (`DELETE_IN_PROGRESS`): what a Teardown Delete checks first. The emulator deletes a
/// stack at once, so it can never be found in that state; everything else in a test runs
/// against the emulator.
pub fn stack_being_deleted(stack_id: &str) -> aws_sdk_cloudformation::Client {
    stack_client(
        stack_id,
        aws_sdk_cloudformation::types::StackStatus::DeleteInProgress,
    )
}

/// A CloudFormation client whose DescribeStacks finds `stack_id` in `status`.
pub fn stack_client(
    stack_id: &str,
    status: aws_sdk_cloudformation::types::StackStatus,
) -> aws_sdk_cloudformation::Client {
    let rule = stack_in(stack_id, status);
    aws_smithy_mocks::mock_client!(
        aws_sdk_cloudformation,
        aws_smithy_mocks::RuleMode::MatchAny,
        &[&rule]
    )
}
