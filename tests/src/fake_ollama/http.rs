//! Just enough HTTP/1.1 for the double: read one request, answer with a JSON body, or
//! write one chunk of a chunked NDJSON stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::Value;

pub(super) struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

pub(super) fn read_request(conn: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { method, path, body }))
}

pub(super) fn respond(conn: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let text = body.to_string();
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}

pub(super) fn chunk(conn: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let mut text = line.to_string();
    text.push('\n');
    // One write per chunk, as a real server's buffered writer sends it: a client that
    // closes on reading the line must not find the chunk's own CRLF still unsent.
    conn.write_all(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())?;
    conn.flush()
}
