//! Reading a request body within Event Grid's size limit: shared by the operations that take
//! a body (`publish`, `subscription`'s settling), below the API's dispatch (`mod.rs`).

use super::error::ApiError;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use futures::StreamExt;

/// The largest request body taken (Event Grid: 1 MB per publish request).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Read a request body of at most [`MAX_REQUEST_BYTES`]; 413 beyond.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = declared
        && length > MAX_REQUEST_BYTES as u64
    {
        return Err(too_large(&length.to_string()));
    }
    let mut buffer = Vec::with_capacity(
        declared
            .and_then(|length| usize::try_from(length).ok())
            .unwrap_or(0),
    );
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(format!("cannot read the request body: {error}"))
        })?;
        if buffer.len() + chunk.len() > MAX_REQUEST_BYTES {
            return Err(too_large(&format!("over {MAX_REQUEST_BYTES}")));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer)
}

fn too_large(size: &str) -> ApiError {
    ApiError::too_large(format!(
        "the request body is {size} bytes; a request may be at most {MAX_REQUEST_BYTES} bytes (1 MB)"
    ))
}
