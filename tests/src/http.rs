//! The bit of HTTP/1.1 both ends of the harness need: reading a message head and its body.

use std::io::{self, BufRead};

/// A start line and its headers, names lowercased (HTTP names are case-insensitive), values
/// trimmed, repeated headers kept in order.
pub(crate) struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn values(&self, name: &str) -> Vec<&str> {
        values(&self.headers, name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values(name).first().copied()
    }

    pub fn content_length(&self) -> io::Result<Option<usize>> {
        self.value("content-length")
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(format!("content-length {v:?}")))
            })
            .transpose()
    }

    pub fn is_chunked(&self) -> bool {
        self.values("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

pub(crate) fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `Ok(None)` when the peer closed cleanly before a new message (the end of keep-alive).
pub(crate) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start_line = String::new();
    if reader.read_line(&mut start_line)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a message head",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(Head {
        start_line: start_line.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    }))
}

/// Reads the body the head announces; `until_eof` for responses that are delimited by close.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    head: &Head,
    until_eof: bool,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.is_chunked() {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                while read_head_line(reader)? {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            read_head_line(reader)?;
        }
    } else if let Some(length) = head.content_length()? {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if until_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Reads one line; whether it had content.
fn read_head_line(reader: &mut impl BufRead) -> io::Result<bool> {
    let mut line = String::new();
    let n = reader.read_line(&mut line)?;
    Ok(n > 0 && !line.trim().is_empty())
}

pub(crate) fn invalid(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed HTTP: {what}"),
    )
}
