//! A small MQTT 5 client, enough for the end-to-end tests: CONNECT with a username (the
//! example Namespace's development identity), SUBSCRIBE, PUBLISH at QoS 1 and receive.
//!
//! Written out rather than taken from a crate or from mosquitto's binaries so that the tests
//! see every reason code the broker sends (CONNACK, SUBACK, PUBACK) and need nothing
//! installed beyond kubectl.

use anyhow::{Context, bail};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// MQTT 5 reason code "Not authorized" (CONNACK, SUBACK, PUBACK).
pub const NOT_AUTHORIZED: u8 = 0x87;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;
const PINGRESP: u8 = 0xd0;
const DISCONNECT: u8 = 0xe0;

/// How long any single answer from the broker may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A message delivered to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// One MQTT 5 connection.
pub struct MqttClient {
    stream: TcpStream,
    next_packet_id: u16,
    /// Messages that arrived while waiting for another answer.
    delivered: VecDeque<Message>,
}

impl MqttClient {
    /// Connects as `username` (clean start). `Ok(Err(code))` when the broker refuses with
    /// CONNACK reason `code`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        username: &str,
    ) -> anyhow::Result<Result<MqttClient, u8>> {
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut client = MqttClient {
            stream,
            next_packet_id: 1,
            delivered: VecDeque::new(),
        };
        let mut body = Vec::new();
        put_string(&mut body, "MQTT");
        body.push(5); // protocol version
        body.push(0x80 | 0x02); // username, clean start
        body.extend_from_slice(&60u16.to_be_bytes()); // keep alive
        put_varint(&mut body, 0); // no properties
        put_string(&mut body, client_id);
        put_string(&mut body, username);
        client.send(CONNECT, &body).await?;
        let (header, body) = client.read_packet().await?;
        if header & 0xf0 != CONNACK {
            bail!("expected CONNACK, got packet type {:#x}", header >> 4);
        }
        let reason = *body.get(1).context("CONNACK too short")?;
        if reason != 0 {
            return Ok(Err(reason));
        }
        Ok(Ok(client))
    }

    /// Subscribes to `filter` at `qos`; the SUBACK reason code (the granted QoS, or 0x80+).
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> anyhow::Result<u8> {
        let packet_id = self.packet_id();
        let mut body = packet_id.to_be_bytes().to_vec();
        put_varint(&mut body, 0);
        put_string(&mut body, filter);
        body.push(qos);
        self.send(SUBSCRIBE, &body).await?;
        let body = self.answer(SUBACK, packet_id).await?;
        let mut cursor = 2;
        let properties = read_varint(&body, &mut cursor)?;
        body.get(cursor + properties)
            .copied()
            .context("SUBACK without a reason code")
    }

    /// Publishes at QoS 1; the PUBACK reason code (0 accepted, 0x87 not authorized, ...).
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> anyhow::Result<u8> {
        let packet_id = self.packet_id();
        let mut body = Vec::new();
        put_string(&mut body, topic);
        body.extend_from_slice(&packet_id.to_be_bytes());
        put_varint(&mut body, 0);
        body.extend_from_slice(payload);
        self.send(PUBLISH | 0x02, &body).await?;
        let body = self.answer(PUBACK, packet_id).await?;
        // A PUBACK of just the packet id means success (MQTT 5, 3.4.2.1).
        Ok(body.get(2).copied().unwrap_or(0))
    }

    /// The next message delivered, or `None` when none comes within `wait`.
    pub async fn next_message(&mut self, wait: Duration) -> anyhow::Result<Option<Message>> {
        if let Some(message) = self.delivered.pop_front() {
            return Ok(Some(message));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let packet = tokio::time::timeout_at(deadline, self.read_any()).await;
            match packet {
                Err(_) => return Ok(None),
                Ok(packet) => {
                    let (header, body) = packet?;
                    self.handle_unsolicited(header, &body).await?;
                    if let Some(message) = self.delivered.pop_front() {
                        return Ok(Some(message));
                    }
                }
            }
        }
    }

    /// Sends DISCONNECT (normal) and closes the connection.
    pub async fn disconnect(mut self) {
        let _ = self.send(DISCONNECT, &[]).await;
        let _ = self.stream.shutdown().await;
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Reads until the answer of type `kind` to `packet_id` comes, keeping messages that
    /// arrive meanwhile.
    async fn answer(&mut self, kind: u8, packet_id: u16) -> anyhow::Result<Vec<u8>> {
        loop {
            let (header, body) = self.read_packet().await?;
            if header & 0xf0 == kind & 0xf0 {
                let id = body.get(..2).context("answer without a packet id")?;
                if id == packet_id.to_be_bytes() {
                    return Ok(body);
                }
                continue;
            }
            self.handle_unsolicited(header, &body).await?;
        }
    }

    async fn handle_unsolicited(&mut self, header: u8, body: &[u8]) -> anyhow::Result<()> {
        match header & 0xf0 {
            PUBLISH => {
                let qos = (header >> 1) & 0x03;
                let mut cursor = 0;
                let topic = read_string(body, &mut cursor)?;
                let packet_id = if qos > 0 {
                    let id = body
                        .get(cursor..cursor + 2)
                        .context("PUBLISH without a packet id")?;
                    cursor += 2;
                    Some([id[0], id[1]])
                } else {
                    None
                };
                let properties = read_varint(body, &mut cursor)?;
                cursor += properties;
                let payload = body.get(cursor..).unwrap_or_default().to_vec();
                if let Some(id) = packet_id {
                    if qos != 1 {
                        bail!("the tests subscribe at QoS 1 at most; the broker sent QoS {qos}");
                    }
                    self.send(PUBACK, &id).await?;
                }
                self.delivered.push_back(Message { topic, payload });
                Ok(())
            }
            PINGRESP => Ok(()),
            DISCONNECT => {
                let reason = body.first().copied().unwrap_or(0);
                bail!("the broker disconnected the client, reason {reason:#x}")
            }
            other => bail!("unexpected packet type {:#x}", other >> 4),
        }
    }

    async fn send(&mut self, header: u8, body: &[u8]) -> anyhow::Result<()> {
        let mut packet = vec![header];
        put_varint(&mut packet, body.len());
        packet.extend_from_slice(body);
        self.stream.write_all(&packet).await?;
        Ok(())
    }

    async fn read_packet(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.read_any())
            .await
            .context("no answer from the broker")?
    }

    async fn read_any(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        let header = self
            .stream
            .read_u8()
            .await
            .context("the broker closed the connection")?;
        let mut length = 0usize;
        for shift in [0, 7, 14, 21] {
            let byte = self.stream.read_u8().await?;
            length |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let mut body = vec![0; length];
                self.stream.read_exact(&mut body).await?;
                return Ok((header, body));
            }
        }
        bail!("malformed remaining length")
    }
}

fn put_string(buffer: &mut Vec<u8>, text: &str) {
    let length = u16::try_from(text.len()).unwrap_or(u16::MAX);
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(&text.as_bytes()[..usize::from(length)]);
}

fn put_varint(buffer: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buffer.push(byte);
        if value == 0 {
            return;
        }
    }
}

fn read_varint(body: &[u8], cursor: &mut usize) -> anyhow::Result<usize> {
    let mut value = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = *body.get(*cursor).context("truncated variable integer")?;
        *cursor += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("malformed variable integer")
}

fn read_string(body: &[u8], cursor: &mut usize) -> anyhow::Result<String> {
    let length = body
        .get(*cursor..*cursor + 2)
        .context("truncated string length")?;
    let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
    *cursor += 2;
    let bytes = body
        .get(*cursor..*cursor + length)
        .context("truncated string")?;
    *cursor += length;
    Ok(String::from_utf8(bytes.to_vec())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_integers_round_trip_at_every_length_boundary() {
        for value in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut buffer = Vec::new();
            put_varint(&mut buffer, value);
            let mut cursor = 0;
            assert_eq!(read_varint(&buffer, &mut cursor).ok(), Some(value));
            assert_eq!(cursor, buffer.len());
        }
    }

    #[test]
    fn strings_are_length_prefixed_utf8() {
        let mut buffer = Vec::new();
        put_string(&mut buffer, "devices/é");
        assert_eq!(&buffer[..2], &[0, 10]);
        let mut cursor = 0;
        assert_eq!(
            read_string(&buffer, &mut cursor).ok().as_deref(),
            Some("devices/é")
        );
    }
}
